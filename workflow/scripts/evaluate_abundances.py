"""Rule evaluate_abundances: metrics.json of both inference steps on the test split."""

import json
from pathlib import Path

import torch

from simbridge.logs import job_logging
from simbridge.models.abundances.evaluation import evaluate

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    models = {k: sm.input[k] for k in ("nsub_npe", "nsub_mnpe", "nsub_classifier")}
    evaluate(sm.input.test, models, list(sm.input.blocks),
             json.loads(Path(sm.input.best).read_text()), sm.params.settings, sm.output[0])

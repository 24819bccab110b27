"""Rule train_abundance_npe: an sbi estimator of step 1 or a member of the step-2 ensemble."""

import json
from pathlib import Path

import torch

from simbridge.logs import job_logging
from simbridge.models.abundances.two_step import (
    train_block_npe,
    train_nsub_mnpe,
    train_nsub_npe,
)

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    files = {s: sm.input[s] for s in ("train", "validation")}
    best = json.loads(Path(sm.input.best).read_text())["best_settings"]
    estimator = sm.wildcards.estimator
    if estimator == "nsub_npe":
        train_nsub_npe(files, sm.params.settings, best, sm.output[0])
    elif estimator == "nsub_mnpe":
        train_nsub_mnpe(files, sm.params.settings, best, sm.output[0])
    else:
        member = int(estimator.rsplit("_", 1)[1])
        train_block_npe(files, sm.params.settings, best, member, sm.output[0])

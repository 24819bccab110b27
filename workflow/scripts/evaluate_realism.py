"""Rule evaluate_realism: LLR of every image set, maps, bootstrap trends, metrics.json."""

import torch

from simbridge.logs import job_logging
from simbridge.models.realism.evaluation import evaluate_realism

torch.set_num_threads(1)

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    evaluate_realism(dict(sm.input), sm.params.simulations, sm.params.models, sm.params.closest,
                     sm.params.evaluation, int(sm.params.seed), sm.output.scores,
                     sm.output.metrics)

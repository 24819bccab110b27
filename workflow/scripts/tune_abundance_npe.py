"""Rule tune_abundance_npe: one optuna worker on the study's shared journal file."""

import torch

from simbridge.logs import job_logging
from simbridge.models.abundances.two_step import tune_worker

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    files = {s: sm.input[s] for s in ("train", "validation")}
    tune_worker(files, sm.params.settings, sm.params.journal, int(sm.wildcards.worker),
                sm.output[0])

"""Rule train_nsub_classifier: the skip-connection CNN classifier of N_sub (resumable)."""

import torch

from simbridge.logs import job_logging
from simbridge.models.abundances.two_step import train_nsub_classifier

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    files = {s: sm.input[s] for s in ("train", "validation")}
    train_nsub_classifier(files, sm.params.settings, sm.output[0], sm.params.checkpoints)

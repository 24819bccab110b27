"""Rule train_dm2gal: one network of one phase (resumable, seeded, early stopping)."""

import json

import torch

from simbridge.logs import job_logging
from simbridge.models.dm2gal.train import train_phase

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    splits = json.loads(open(sm.input.splits).read())
    cfg = sm.params.settings
    train_phase(sm.wildcards.phase, sm.wildcards.arch, list(sm.input.grids), splits,
                cfg["dm2gal"], cfg["seed"], sm.output.model, sm.output.history,
                sm.params.checkpoints)

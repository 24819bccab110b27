"""Rule train_exsitu_cvae: the conditional VAE of one model of the sweep."""

import torch

from simbridge.logs import job_logging
from simbridge.models.data import set_memory_budget
from simbridge.models.exsitu import train_cvae

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    runtime = sm.config["exsitu_model"]
    # the job's CPUs: loader worker processes, the rest for torch's own threads
    torch.set_num_threads(max(1, sm.threads - runtime["loader_workers"]))
    set_memory_budget(runtime["loader_memory_gb"])  # None: half the job's free memory
    train_cvae(sm.input.train, sm.input.validation, sm.params.settings, sm.output.model,
               sm.output.history, sm.output.curves, sm.params.checkpoints,
               device=runtime["device"], loader_workers=runtime["loader_workers"])

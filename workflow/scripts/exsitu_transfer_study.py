"""Rule exsitu_transfer_study: one ex-situ model on other universes, error against distance."""

import torch

from simbridge.logs import job_logging
from simbridge.models.exsitu_transfer import run_transfer_study

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(max(1, sm.threads))
    maps = {n: sm.input[f"maps_{n}"] for n in sm.params.universes}
    run_transfer_study(sm.input.cvae, sm.input.flow, sm.input.train, sm.input.test, maps,
                       sm.params.settings, sm.params.seed, sm.wildcards.model,
                       sm.output.metrics, sm.output.applied,
                       device=sm.config["exsitu_model"]["device"])

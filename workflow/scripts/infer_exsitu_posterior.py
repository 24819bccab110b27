"""Rule infer_exsitu_posterior: posterior maps of new galaxies from a trained model."""

import torch

from simbridge.logs import job_logging
from simbridge.models.data import set_memory_budget
from simbridge.models.inference import infer_posterior, plot_inference

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    runtime = sm.config["exsitu_model"]
    torch.set_num_threads(max(1, sm.threads))
    set_memory_budget(runtime["loader_memory_gb"])  # None: half the job's free memory
    infer_posterior(sm.input.cvae, sm.input.flow, sm.input.train, sm.input.conditions,
                    sm.params.settings, sm.output.posterior, sm.output.summary,
                    device=runtime["device"], batch_size=runtime["evaluation"]["batch_size"])
    plot_inference(sm.input.conditions, sm.output.posterior, sm.output.figures,
                   sm.params.max_figures)

"""Rule evaluate_exsitu_model: posterior draws on the test split, metrics and figures."""

import torch

from simbridge.logs import job_logging
from simbridge.models.data import set_memory_budget
from simbridge.models.evaluation import evaluate_model
from simbridge.report import model_figures as mf

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    runtime = sm.config["exsitu_model"]
    # the job's CPUs: loader worker processes, the rest for torch's own threads
    torch.set_num_threads(max(1, sm.threads - runtime["loader_workers"]))
    set_memory_budget(runtime["loader_memory_gb"])  # None: half the job's free memory
    evaluate_model(sm.input.cvae, sm.input.flow, sm.input.test, sm.params.settings,
                   sm.output.metrics, sm.output.posterior, device=runtime["device"],
                   batch_size=runtime["evaluation"]["batch_size"],
                   loader_workers=runtime["loader_workers"])
    mf.plot_residuals(sm.output.metrics, sm.output.residuals)
    mf.plot_residual_vs_truth(sm.output.metrics, sm.output.residual_vs_truth)
    mf.plot_coverage(sm.output.metrics, sm.output.coverage)
    mf.plot_calibration(sm.output.metrics, sm.output.calibration)
    mf.plot_example_posteriors(sm.input.test, sm.output.posterior, sm.output.examples,
                               sm.params.n_examples)

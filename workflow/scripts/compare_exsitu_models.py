"""Rule compare_exsitu_models: the sweep's table and figure."""

from simbridge.logs import job_logging
from simbridge.report.model_figures import compare_models

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    compare_models(sm.input.metrics, sm.params.models, sm.output.table, sm.output.figure)

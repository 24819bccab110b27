"""Rule compare_ifu_models: ideal-trained and IFU-trained models on the same test galaxies."""

from simbridge.logs import job_logging
from simbridge.models.ifu_comparison import compare_ifu_models
from simbridge.report.ifu_figures import plot_ifu_comparison

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    compare_ifu_models(sm.input, sm.params.radius_bins, sm.output.metrics)
    plot_ifu_comparison(sm.output.metrics, sm.output.figure)

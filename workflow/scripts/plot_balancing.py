"""Rule plot_balancing: balancing and split figure."""

from simbridge.logs import job_logging
from simbridge.report.figures import plot_balancing

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    plot_balancing(sm.input.summary, sm.input.manifest, sm.output[0])

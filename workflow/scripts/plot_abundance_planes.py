"""Rule plot_abundance_planes: example building-block planes and superposed halos."""

from simbridge.logs import job_logging
from simbridge.report.abundance_figures import plot_abundance_planes

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    plot_abundance_planes(sm.input.histograms, sm.input.test, sm.output[0])

"""Rule plot_ifu_maps: ideal and IFU-like maps of example test galaxies, with the Voronoi bins."""

from simbridge.logs import job_logging
from simbridge.report.ifu_figures import plot_ifu_examples

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    plot_ifu_examples(sm.input.maps, sm.output[0], sm.params.n_galaxies)

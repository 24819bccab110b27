"""Rule plot_dm2gal: the branch's report figures."""

from simbridge.logs import job_logging
from simbridge.report.dm2gal_figures import plot_dm2gal_figures

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    plot_dm2gal_figures(sm.input.metrics, sm.input.predictions, list(sm.input.histories),
                        dict(sm.output.items()))

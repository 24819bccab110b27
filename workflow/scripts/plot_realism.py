"""Rule plot_realism: the branch's report figures."""

from simbridge.logs import job_logging
from simbridge.report.realism_figures import plot_realism

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    plot_realism(sm.input.metrics, sm.input.scores, list(sm.input.histories), sm.params.models,
                 dict(sm.output))

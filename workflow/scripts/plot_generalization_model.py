"""Rule plot_generalization_model: error vs distance and held-out figures of one model kind."""

from simbridge.logs import job_logging
from simbridge.report import generalization_figures as figs

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    figs.plot_error_vs_distance(sm.input.metrics, sm.wildcards.kind, sm.output.error_distance)
    figs.plot_heldout(sm.input.metrics, sm.wildcards.kind, sm.output.heldout)

"""Rule plot_abundance_results: the report figures of the abundances evaluation."""

from simbridge.logs import job_logging
from simbridge.report import abundance_figures

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    for figure in ("posterior_vs_truth", "calibration", "nsub", "tuning"):
        getattr(abundance_figures, f"plot_{figure}")(sm.input[0], sm.output[figure])

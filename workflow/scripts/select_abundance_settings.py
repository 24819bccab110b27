"""Rule select_abundance_settings: best trial, all trials and importances of the study."""

from simbridge.logs import job_logging
from simbridge.models.abundances.two_step import select_best

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    select_best(sm.params.journal, sm.params.settings, sm.output[0])

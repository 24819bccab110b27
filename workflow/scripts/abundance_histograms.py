"""Rule abundance_histograms: global range, one histogram per building block, error table."""

import logging

from simbridge.extract.abundances import build_histograms
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    summary = build_histograms(sm.input.stars, sm.input.errors, sm.params.settings,
                               sm.output.histograms, sm.output.blocks, sm.output.errors)
    logging.getLogger("abundance_histograms").info("%s", summary)

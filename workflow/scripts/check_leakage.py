"""Rule check_leakage: fail the run if a galaxy crosses splits."""

from simbridge.dataset.splits import check_leakage
from simbridge.logs import job_logging
from simbridge.paths import SPLITS

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    check_leakage(dict(zip(SPLITS, sm.input.splits, strict=True)), sm.input.links,
                  sm.output[0])

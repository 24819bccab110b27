"""Rule extract_ifu_maps: IFU-like maps of one batch of galaxies."""

from simbridge.config import with_read_settings
from simbridge.extract.tng_ifu import extract_ifu_batch
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    extract_ifu_batch(sm.params.base_path, int(sm.wildcards.snapshot), sm.input.catalog,
                      int(sm.wildcards.batch), with_read_settings(sm.params.settings, sm.config),
                      sm.output.maps, sm.output.galaxies, plan_csv=sm.input.plan)

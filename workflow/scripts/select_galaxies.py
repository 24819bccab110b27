"""Rule select_galaxies: galaxy catalog of one snapshot, assigned to batches."""

from simbridge.extract.tng_maps import write_galaxy_catalog
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    write_galaxy_catalog(sm.params.base_path, int(sm.wildcards.snapshot), sm.params.tng,
                         sm.output[0])

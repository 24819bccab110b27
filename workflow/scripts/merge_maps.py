"""Rule merge_maps: one maps file and the galaxy manifest."""

from simbridge.extract.tng_maps import merge_batches
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    merge_batches(sm.input.maps, sm.input.galaxies, sm.input.catalogs, sm.params.settings,
                  sm.output.maps, sm.output.manifest)

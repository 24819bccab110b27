"""Rule extract_transfer_maps: maps of one transfer universe (TNG branch's extraction)."""

from simbridge.logs import job_logging
from simbridge.models.exsitu_transfer import extract_universe_maps

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    extract_universe_maps(sm.params.base_path, sm.params.snapshot, sm.params.settings,
                          sm.params.views, sm.output.catalog, sm.output.maps, sm.output.manifest,
                          sm.wildcards.transfer)

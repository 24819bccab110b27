"""Rule build_split: the HDF5 file of one split."""

from simbridge.dataset.build import build_split
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    build_split(sm.wildcards.split, sm.input.maps, sm.input.galaxies, sm.input.splits,
                sm.params.settings, sm.output[0])

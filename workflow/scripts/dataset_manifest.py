"""Rule dataset_manifest: one row per galaxy of the dataset."""

from simbridge.dataset.build import write_dataset_manifest
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    write_dataset_manifest(sm.input.galaxies, sm.input.catalogs, sm.input.plan,
                           sm.input.splits, sm.params.settings, sm.output[0])

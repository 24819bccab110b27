"""Rule superpose_abundances: the superposed halos of train, validation and test."""

from simbridge.dataset.superpose import build_superposition_files
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    build_superposition_files(sm.input.histograms, sm.params.settings,
                              {split: sm.output[split] for split in ("train", "validation",
                                                                     "test")})

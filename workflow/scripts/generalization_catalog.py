"""Rule generalization_catalog: galaxies of one universe and their roles."""

from simbridge.dataset.domains import write_universe_catalog
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    write_universe_catalog(sm.params.base_path, sm.wildcards.universe, int(sm.params.snapshot),
                           sm.params.settings, int(sm.params.seed), sm.output[0])

"""Rule render_spectra: the spectra of one domain."""

from simbridge.dataset.domains import read_universe_catalog
from simbridge.extract.spectra import render_domain
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    record = {"domain": sm.params.domain, "spectra": sm.params.spectra,
              "min_star_particles": sm.params.min_star_particles,
              "min_galaxies": sm.params.min_galaxies, "snapshot": sm.params.snapshot}
    render_domain(sm.params.base_path, int(sm.params.snapshot),
                  read_universe_catalog(sm.input.catalog), sm.params.domain, sm.params.spectra,
                  int(sm.params.min_star_particles), sm.params.min_galaxies,
                  int(sm.params.seed), sm.output.spectra, sm.output.manifest, record)

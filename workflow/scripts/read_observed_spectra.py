"""Rule read_observed_spectra: SDSS spectra of a directory on the domains' rest-frame grid."""

import numpy as np

from simbridge.extract.spectra import wavelength_grid, write_spectra_file
from simbridge.io import atomic_output
from simbridge.logs import job_logging
from simbridge.sims.sdss import read_sdss_directory

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    wave = wavelength_grid(sm.params.spectra)
    flux, ivar, table = read_sdss_directory(sm.params.directory, wave)
    galaxies = {
        "subhalo_id": (np.arange(len(table)), "index of the file in the manifest"),
        "role": (np.full(len(table), b"observed"), "observed spectra (no known mass)"),
        "redshift": (table["redshift"].to_numpy(), "SDSS SPECOBJ Z"),
    }
    write_spectra_file(sm.output.spectra, wave, flux, ivar, galaxies,
                       {"domain": "observed", "source": str(sm.params.directory)},
                       {"observed_spectra_dir": sm.params.directory,
                        "spectra": sm.params.spectra}, int(sm.params.seed),
                       [str(sm.params.directory)])
    with atomic_output(sm.output.manifest) as tmp:
        table.to_csv(tmp, index=False)

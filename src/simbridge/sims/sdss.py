"""Reading SDSS optical spectra (``spec-PLATE-MJD-FIBER.fits``, DR8+ layout) with astropy.

HDU 1 (``COADD``) holds ``loglam`` (log10 observed vacuum wavelength, Angstrom), ``flux``
(1e-17 erg/s/cm^2/Angstrom) and ``ivar``; HDU 2 (``SPECOBJ``) holds the redshift ``Z``. A
spectrum is brought to the rest frame of the simulated domains: wavelength / (1 + z), and
luminosity density L_lambda = 4 pi d_L^2 (1 + z) f_lambda (the flux of a source at luminosity
distance d_L is L_lambda / (4 pi d_L^2 (1 + z)) per observed Angstrom), in L_sun/Angstrom
(bagpipes' L_sun = 3.826e33 erg/s), on the configured log-lambda grid by linear interpolation
over the pixels with ivar > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.cosmology import FlatLambdaCDM
from astropy.io import fits
from numpy.typing import NDArray

from simbridge.errors import SimBridgeInputError

SDSS_FLUX_UNIT_CGS = 1e-17  # erg / s / cm^2 / Angstrom
L_SUN_ERG_S = 3.826e33
MPC_CM = 3.0856775814913673e24
#: Cosmology of the rest-frame conversion (Planck 2015, as TNG).
DEFAULT_COSMOLOGY = {"hubble_param": 0.6774, "omega_matter": 0.3089}


@dataclass
class ObservedSpectrum:
    """One SDSS spectrum on the rest-frame grid."""

    path: Path
    redshift: float
    luminosity: NDArray  # L_sun / Angstrom on the grid
    ivar: NDArray
    n_bad_pixels: int


def read_sdss_spectrum(path: str | Path, wavelength_angstrom: NDArray,
                       cosmology: dict[str, float] | None = None) -> ObservedSpectrum:
    """Read one spec-*.fits file onto ``wavelength_angstrom`` (rest frame).

    Raises SimBridgeInputError naming the file when it is not an SDSS spectrum, has no or a
    negative redshift, holds NaN fluxes, or does not cover the grid in the rest frame.
    """
    path = Path(path)
    cosmo = {**DEFAULT_COSMOLOGY, **(cosmology or {})}
    try:
        with fits.open(path) as hdul:
            coadd = hdul[1].data
            loglam = np.asarray(coadd["loglam"], dtype=np.float64)
            flux = np.asarray(coadd["flux"], dtype=np.float64)
            ivar = np.asarray(coadd["ivar"], dtype=np.float64)
            z = float(hdul[2].data["Z"][0])
    except (OSError, KeyError, IndexError, TypeError) as err:
        raise SimBridgeInputError(
            f"not an SDSS spec-*.fits spectrum (COADD loglam/flux/ivar and SPECOBJ Z): {err}",
            path, "keep only SDSS spec-PLATE-MJD-FIBER.fits files (DR8 or later) in "
            "generalization.observed_spectra_dir") from None
    if not np.isfinite(z) or z < 0:
        raise SimBridgeInputError(f"redshift Z = {z} is not usable", path,
                                  "drop this spectrum (no reliable redshift)")
    if not np.isfinite(flux).all():
        raise SimBridgeInputError(
            f"{int((~np.isfinite(flux)).sum())} NaN or infinite flux values", path,
            "set their ivar to 0 (SDSS marks bad pixels so) or drop the file")
    rest = 10.0**loglam / (1.0 + z)
    want = np.asarray(wavelength_angstrom, dtype=np.float64)
    good = (ivar > 0) & np.isfinite(ivar)
    if not good.any() or rest[good].min() > want.min() or rest[good].max() < want.max():
        cover = (f"{rest[good].min():.0f}-{rest[good].max():.0f}" if good.any() else "nothing")
        raise SimBridgeInputError(
            f"rest-frame coverage {cover} A (z = {z:.4f}) does not span the configured "
            f"{want.min():.0f}-{want.max():.0f} A", path,
            "narrow generalization.spectra.wavelength_min/max_angstrom to a range every "
            "spectrum covers (SDSS observes 3800-9200 A), or drop this file")
    d_l_cm = float(FlatLambdaCDM(H0=100.0 * cosmo["hubble_param"], Om0=cosmo["omega_matter"],
                                 Tcmb0=0).luminosity_distance(z).value) * MPC_CM
    to_lum = 4.0 * np.pi * d_l_cm**2 * (1.0 + z) * SDSS_FLUX_UNIT_CGS / L_SUN_ERG_S
    lum = np.interp(want, rest[good], flux[good]) * to_lum
    lum_ivar = np.interp(want, rest[good], ivar[good]) / to_lum**2
    return ObservedSpectrum(path, z, lum, lum_ivar, int((~good).sum()))


def read_sdss_directory(directory: str | Path, wavelength_angstrom: NDArray,
                        cosmology: dict[str, float] | None = None
                        ) -> tuple[NDArray, NDArray, pd.DataFrame]:
    """Every spec-*.fits of a directory: (luminosity (n, n_wave), ivar, table of files)."""
    directory = Path(directory)
    files = sorted(directory.glob("spec-*.fits"))
    if not files:
        raise SimBridgeInputError("no spec-*.fits files found", directory,
                                  "set generalization.observed_spectra_dir to a directory of "
                                  "SDSS spectra, or to null for the demo")
    spectra = [read_sdss_spectrum(p, wavelength_angstrom, cosmology) for p in files]
    table = pd.DataFrame({"file": [s.path.name for s in spectra],
                          "redshift": [s.redshift for s in spectra],
                          "n_bad_pixels": [s.n_bad_pixels for s in spectra]})
    return (np.stack([s.luminosity for s in spectra]), np.stack([s.ivar for s in spectra]),
            table)

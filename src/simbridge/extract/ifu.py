"""IFU-like condition maps: a galaxy's five condition maps as an integral-field survey sees them.

A spaxel-level forward model (MaNGA-like defaults; RealSim-IFS, Bottrell & Hani 2022, goes on to
fibre bundles and dithering, which this does not). One view of one galaxy:

1. The galaxy is placed at ``ifu.redshift``: the snapshot header's cosmology (astropy
   ``LambdaCDM``) gives the angular scale (proper kpc per arcsec) and the luminosity distance.
2. Star particles are deposited (nearest spaxel) on a square grid of ``spaxel_arcsec`` spaxels
   covering the footprint (``footprint_effective_radii`` x the view's projected r-band
   half-light radius R_e) plus a margin of two PSF FWHM, as the sums per spaxel of
   L, L v, L v^2, L age, L Z and M (L: r-band luminosity from ``GFM_StellarPhotometrics``
   index 5, AB absolute magnitude; v: line-of-sight velocity).
3. Every sum is convolved with a Gaussian PSF of ``psf_fwhm_arcsec`` (flux conserving). The
   kinematics follow from the convolved moments: v = [L v] / [L],
   sigma^2 = [L v^2] / [L] - v^2, so sigma holds the dispersion inside the PSF *and* the
   smeared velocity gradient (beam smearing), as in real data.
4. S/N per spaxel from the r-band surface brightness at the configured depth (source + sky
   photon noise, :func:`spaxel_snr`); spaxels inside the footprint with S/N >= ``min_spaxel_snr``
   are Voronoi-binned to ``target_snr`` with ``vorbin`` (Cappellari & Copin 2003); bins that
   vorbin's tessellation leaves below the target are merged into their nearest neighbour.
5. Per bin, the luminosity-weighted v, sigma, age and Z and the mass surface density are
   measured from the bin's summed moments, then perturbed with Gaussian errors that scale with
   the bin's S/N (:func:`measurement_errors`: err = err_ref (S/N_ref / S/N)^exponent).
6. The bin values are resampled onto the model's grid (npix x npix over +-f R_half, the grid
   of the ideal maps and of the ex-situ target) with exact area-overlap weights
   (:func:`overlap_matrix`): luminosity-weighted for v, sigma, age and Z, area-weighted for
   the surface density. A model pixel is a galaxy pixel when valid bins cover at least
   ``min_covered_fraction`` of it and hold its centre (footprint and S/N cut) and the ideal map
   has at least ``maps.min_particles_per_pixel`` star particles there (the target is defined).

Weighting of each IFU map (``IFU_WEIGHTING``): surface density mass (through the PSF, bin mean:
what a fitted M/L times the r-band light gives), velocity, dispersion, age and metallicity
r-band luminosity. The ideal maps (mass-weighted, no PSF, no noise) are kept beside them.
No K-correction and no dust: the r-band luminosity is the rest-frame one.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from simbridge.extract.maps import MAP_CHANNELS

#: Index of the r band in GFM_StellarPhotometrics (U, B, V, K, g, r, i, z).
R_BAND_INDEX = 5
#: Absolute AB magnitude of the Sun in SDSS r (Willmer 2018).
SUN_ABS_MAG_R_AB = 4.65
#: Magnitudes at or above this mean "no light" (TNG writes 99 for wind cells).
NO_LIGHT_MAGNITUDE = 90.0
#: FWHM of a Gaussian in units of its sigma.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Weighting of every IFU condition map, in MAP_CHANNELS order (stored as an attribute).
IFU_WEIGHTING: tuple[str, ...] = (
    "stellar mass through the PSF, mean over the Voronoi bin",
    "r-band luminosity through the PSF, Voronoi bin",
    "r-band luminosity through the PSF (includes the smeared velocity gradient), Voronoi bin",
    "r-band luminosity through the PSF, Voronoi bin",
    "r-band luminosity through the PSF, Voronoi bin",
)
IDEAL_WEIGHTING: tuple[str, ...] = (
    "stellar mass (no PSF)", "stellar mass", "stellar mass", "stellar mass", "stellar mass",
)
#: Error config keys per channel (MAP_CHANNELS order) and whether the error is in dex.
ERROR_KEYS: tuple[tuple[str, bool], ...] = (
    ("stellar_mass_surface_density_dex", True),
    ("los_velocity_kms", False),
    ("los_velocity_dispersion_kms", False),
    ("stellar_age_dex", True),
    ("metallicity_dex", True),
)
#: A view whose spaxel grid would exceed this many spaxels per side is refused (memory guard).
MAX_SPAXELS_PER_SIDE = 2048


@dataclass(frozen=True)
class IfuSettings:
    """The ``ifu`` config section (see config.schema.yaml for the meaning of every key)."""

    redshift: float
    psf_fwhm_arcsec: float
    spaxel_arcsec: float
    footprint_effective_radii: float
    min_spaxel_snr: float
    target_snr: float
    min_covered_fraction: float
    reference_surface_brightness: float
    snr_at_reference: float
    sky_surface_brightness: float
    error_reference_snr: float
    error_exponent: float
    errors: tuple[float, ...]  # MAP_CHANNELS order, units of ERROR_KEYS

    @classmethod
    def from_config(cls, ifu: dict[str, Any]) -> IfuSettings:
        depth, err = ifu["depth"], ifu["errors"]
        return cls(
            redshift=float(ifu["redshift"]),
            psf_fwhm_arcsec=float(ifu["psf_fwhm_arcsec"]),
            spaxel_arcsec=float(ifu["spaxel_arcsec"]),
            footprint_effective_radii=float(ifu["footprint_effective_radii"]),
            min_spaxel_snr=float(ifu["min_spaxel_snr"]),
            target_snr=float(ifu["target_snr"]),
            min_covered_fraction=float(ifu["min_covered_fraction"]),
            reference_surface_brightness=float(depth["reference_surface_brightness_mag_arcsec2"]),
            snr_at_reference=float(depth["snr_per_spaxel_at_reference"]),
            sky_surface_brightness=float(depth["sky_surface_brightness_mag_arcsec2"]),
            error_reference_snr=float(err["reference_snr"]),
            error_exponent=float(err["exponent"]),
            errors=tuple(float(err[k]) for k, _ in ERROR_KEYS),
        )


# --------------------------------------------------------------------------- cosmology, light

def angular_scale_kpc_per_arcsec(redshift: float, hubble_param: float, omega_matter: float,
                                 omega_lambda: float) -> float:
    """Proper kpc per arcsec at ``redshift`` for the header's cosmology (astropy LambdaCDM)."""
    return float(_cosmology(hubble_param, omega_matter, omega_lambda)
                 .kpc_proper_per_arcmin(redshift).value / 60.0)


def distance_modulus(redshift: float, hubble_param: float, omega_matter: float,
                     omega_lambda: float) -> float:
    """5 log10(D_L / 10 pc) at ``redshift`` (astropy LambdaCDM; no K-correction)."""
    d_l = _cosmology(hubble_param, omega_matter, omega_lambda).luminosity_distance(redshift)
    return float(5.0 * np.log10(d_l.to_value("pc") / 10.0))


@functools.cache
def _cosmology(hubble_param: float, omega_matter: float, omega_lambda: float):
    from astropy.cosmology import LambdaCDM

    return LambdaCDM(H0=100.0 * hubble_param, Om0=omega_matter, Ode0=omega_lambda, Tcmb0=0.0)


def r_band_luminosity_lsun(photometrics: NDArray) -> NDArray:
    """r-band luminosity (Lsun) per particle from GFM_StellarPhotometrics (N, 8) AB magnitudes;
    entries >= 90 (no light) give 0."""
    mag = np.asarray(photometrics, dtype=np.float64)[:, R_BAND_INDEX]
    return np.where(mag < NO_LIGHT_MAGNITUDE, 10.0 ** (-0.4 * (mag - SUN_ABS_MAG_R_AB)), 0.0)


def half_light_radius(x: NDArray, y: NDArray, luminosity: NDArray) -> float:
    """Projected circular radius holding half of the luminosity (same units as x, y)."""
    r = np.hypot(x, y)
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(luminosity[order])
    if cum.size == 0 or cum[-1] <= 0:
        return float("nan")
    k = int(np.searchsorted(cum, 0.5 * cum[-1]))
    return float(r[order][min(k, r.size - 1)])


# --------------------------------------------------------------------------- grids, PSF

def grid_edges(half_width: float, n: int) -> NDArray:
    """n + 1 edges of n equal cells spanning [-half_width, half_width]."""
    return np.linspace(-half_width, half_width, n + 1)


def deposit(x: NDArray, y: NDArray, weights: NDArray, edges: NDArray) -> NDArray:
    """Sums of ``weights`` (k, N) per cell of the square grid ``edges``: (k, n, n), [iy, ix].

    Nearest-cell deposition (half-open cells); particles outside are dropped."""
    n = edges.size - 1
    ix = np.floor((x - edges[0]) / (edges[-1] - edges[0]) * n).astype(np.int64)
    iy = np.floor((y - edges[0]) / (edges[-1] - edges[0]) * n).astype(np.int64)
    keep = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
    cell = iy[keep] * n + ix[keep]
    w = np.atleast_2d(weights)[:, keep]
    return np.stack([np.bincount(cell, weights=wk, minlength=n * n) for wk in w]).reshape(-1, n, n)


def convolve_psf(maps: NDArray, fwhm_cells: float) -> NDArray:
    """Convolve (k, n, n) maps with a normalised Gaussian PSF of ``fwhm_cells`` (flux that the
    PSF carries beyond the grid is lost; the grid has a margin of two FWHM)."""
    sigma = fwhm_cells / FWHM_PER_SIGMA
    if sigma <= 0:
        return np.array(maps, dtype=np.float64)
    return np.stack([gaussian_filter(m, sigma, mode="constant", cval=0.0, truncate=4.0)
                     for m in np.asarray(maps, dtype=np.float64)])


def kinematic_moments(lum: NDArray, lum_v: NDArray, lum_v2: NDArray
                      ) -> tuple[NDArray, NDArray]:
    """Luminosity-weighted velocity and dispersion from the moments [L], [L v], [L v^2]
    (0 where [L] = 0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(lum > 0, lum_v / lum, 0.0)
        second = np.where(lum > 0, lum_v2 / lum, 0.0)
    return v, np.sqrt(np.clip(second - v**2, 0.0, None))


def overlap_matrix(src_edges: NDArray, dst_edges: NDArray) -> NDArray:
    """(n_dst, n_src): the fraction of every source cell inside every destination cell (1-d).

    ``W_y @ F @ W_x.T`` rebins a flux map F exactly (flux inside the destination grid is
    conserved)."""
    lo = np.maximum(dst_edges[:-1, None], src_edges[None, :-1])
    hi = np.minimum(dst_edges[1:, None], src_edges[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(src_edges)[None, :]


def rebin_flux(flux: NDArray, src_edges: NDArray, dst_edges: NDArray) -> NDArray:
    """Rebin (..., n_src, n_src) flux maps onto the square grid ``dst_edges``."""
    w = overlap_matrix(src_edges, dst_edges)
    return w @ flux @ w.T


# --------------------------------------------------------------------------- noise, binning

def spaxel_snr(surface_brightness_maggies: NDArray, settings: IfuSettings) -> NDArray:
    """S/N per spaxel from the r-band surface brightness I (AB maggies per arcsec^2).

    Photon noise of source and sky: S/N = s_ref (I / I_ref) sqrt((I_ref + I_sky) / (I + I_sky)),
    normalised so that a spaxel at the reference surface brightness has S/N = s_ref
    (``depth``: reference_surface_brightness_mag_arcsec2, snr_per_spaxel_at_reference,
    sky_surface_brightness_mag_arcsec2)."""
    i_ref = 10.0 ** (-0.4 * settings.reference_surface_brightness)
    i_sky = 10.0 ** (-0.4 * settings.sky_surface_brightness)
    i = np.clip(np.asarray(surface_brightness_maggies, dtype=np.float64), 0.0, None)
    return settings.snr_at_reference * (i / i_ref) * np.sqrt((i_ref + i_sky) / (i + i_sky))


def voronoi_bins(x: NDArray, y: NDArray, signal: NDArray, noise: NDArray, target_snr: float
                 ) -> tuple[NDArray, NDArray]:
    """Voronoi bins (vorbin) of spaxels to ``target_snr``: (bin index per spaxel, S/N per bin).

    Bin S/N = sum(signal) / sqrt(sum(noise^2)) (no covariance between spaxels). vorbin's
    centroidal tessellation leaves bins scattered around the target; every bin below it is
    merged into the nearest bin (centroids) until all reach it. Every spaxel gets index -1
    when all of them together stay below the target; bins are numbered 0..n-1."""
    signal = np.asarray(signal, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if signal.size == 0 or signal.sum() / math.sqrt((noise**2).sum()) < target_snr:
        return np.full(signal.size, -1, dtype=np.int64), np.zeros(0)
    # spaxels above the target are bins of their own (as vorbin leaves them); vorbin bins the
    # rest, which keeps its per-bin accretion loop short
    bright = signal / noise >= target_snr
    index = np.full(signal.size, -1, dtype=np.int64)
    index[bright] = np.arange(int(bright.sum()))
    faint = np.flatnonzero(~bright)
    if faint.size and (signal[faint].sum() / math.sqrt((noise[faint] ** 2).sum()) < target_snr
                       or faint.size == 1):
        index[faint] = _nearest(x[faint], y[faint], x[bright], y[bright], index[bright])
    elif faint.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from vorbin.voronoi_2d_binning import voronoi_2d_binning
            sub = voronoi_2d_binning(x[faint], y[faint], signal[faint], noise[faint], target_snr,
                                     cvt=True, pixelsize=1.0, plot=False, quiet=True,
                                     wvt=True)[0].astype(np.int64)
        index[faint] = sub + int(bright.sum())
    n_bins = int(index.max()) + 1
    sig = np.bincount(index, signal, n_bins)
    var = np.bincount(index, noise**2, n_bins)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    cx = np.bincount(index, x, n_bins) / np.maximum(count, 1)
    cy = np.bincount(index, y, n_bins) / np.maximum(count, 1)
    alive = count > 0
    target = target_snr * (1.0 - 1e-12)
    while True:
        snr = np.where(alive, sig / np.sqrt(np.maximum(var, 1e-300)), np.inf)
        low = int(np.argmin(snr))
        if snr[low] >= target:
            break
        d2 = np.where(alive, (cx - cx[low]) ** 2 + (cy - cy[low]) ** 2, np.inf)
        d2[low] = np.inf
        j = int(np.argmin(d2))
        cx[j] = (cx[j] * count[j] + cx[low] * count[low]) / (count[j] + count[low])
        cy[j] = (cy[j] * count[j] + cy[low] * count[low]) / (count[j] + count[low])
        sig[j] += sig[low]
        var[j] += var[low]
        count[j] += count[low]
        alive[low] = False
        index[index == low] = j
    renumber = np.full(n_bins, -1, dtype=np.int64)
    renumber[alive] = np.arange(int(alive.sum()))
    return renumber[index], (sig / np.sqrt(var))[alive]


def _nearest(x: NDArray, y: NDArray, xs: NDArray, ys: NDArray, labels: NDArray) -> NDArray:
    """Label of the nearest of the points (xs, ys) for every point (x, y)."""
    from scipy.spatial import cKDTree

    return labels[cKDTree(np.c_[xs, ys]).query(np.c_[x, y])[1]]


def measurement_errors(snr: NDArray, settings: IfuSettings) -> NDArray:
    """1-sigma errors (5, n_bins) per channel (dex for surface density, age and Z; km/s for v
    and sigma): err = err_ref (S/N_ref / S/N)^exponent, the relation of photon-noise-limited
    spectral fits for exponent 1."""
    factor = (settings.error_reference_snr / np.asarray(snr, dtype=np.float64)) \
        ** settings.error_exponent
    return np.asarray(settings.errors)[:, None] * factor[None, :]


def add_measurement_noise(values: NDArray, errors: NDArray, rng: np.random.Generator) -> NDArray:
    """Values (5, n_bins) with Gaussian errors: additive for v and sigma (sigma clipped at 0),
    log-normal (errors in dex) for surface density, age and Z."""
    eps = rng.standard_normal(values.shape)
    out = np.array(values, dtype=np.float64)
    for ch, (_, in_dex) in enumerate(ERROR_KEYS):
        if in_dex:
            out[ch] = values[ch] * 10.0 ** (errors[ch] * eps[ch])
        else:
            out[ch] = values[ch] + errors[ch] * eps[ch]
    out[2] = np.clip(out[2], 0.0, None)
    return out


# --------------------------------------------------------------------------- one view

@dataclass(frozen=True)
class IfuView:
    """IFU-like maps of one view on the model grid (npix x npix, index [iy, ix])."""

    conditions: NDArray  # (5, n, n) f4, MAP_CHANNELS with IFU_WEIGHTING; 0 outside the mask
    condition_errors: NDArray  # (5, n, n) f4, units of ERROR_KEYS
    galaxy_mask: NDArray  # (n, n) bool: covered by valid bins and the target is defined
    footprint_mask: NDArray  # (n, n) bool: pixel centre within the footprint
    voronoi_bin: NDArray  # (n, n) i4: bin of the spaxel at the pixel centre, -1 none
    bin_snr: NDArray  # (n, n) f4: S/N of that bin, 0 none
    surface_brightness: NDArray  # (n, n) f4: r-band mag arcsec^-2 after the PSF (99: no light)
    effective_radius_kpc: float
    n_bins: int
    n_spaxels_binned: int
    n_spaxels_per_side: int


@dataclass(frozen=True)
class SpaxelMoments:
    """PSF-convolved sums per spaxel: L (Lsun), L v, L v^2, L age, L Z, M (Msun)."""

    edges_kpc: NDArray
    sums: NDArray  # (6, n, n)

    @property
    def luminosity(self) -> NDArray:
        return self.sums[0]

    def velocity_and_dispersion(self) -> tuple[NDArray, NDArray]:
        return kinematic_moments(self.sums[0], self.sums[1], self.sums[2])


def spaxel_moments(x_kpc: NDArray, y_kpc: NDArray, v_kms: NDArray, mass: NDArray,
                   age: NDArray, metallicity: NDArray, luminosity: NDArray,
                   half_width_kpc: float, spaxel_kpc: float, psf_fwhm_kpc: float
                   ) -> SpaxelMoments:
    """Deposit particles on a centred spaxel grid of at least ``half_width_kpc`` and convolve
    their moments with the PSF."""
    n = 2 * max(1, math.ceil(half_width_kpc / spaxel_kpc))
    if n > MAX_SPAXELS_PER_SIDE:
        raise ValueError(f"the spaxel grid would have {n} spaxels per side "
                         f"(> {MAX_SPAXELS_PER_SIDE}): raise ifu.redshift or ifu.spaxel_arcsec")
    edges = grid_edges(0.5 * n * spaxel_kpc, n)
    v = np.asarray(v_kms, dtype=np.float64)
    lum = np.asarray(luminosity, dtype=np.float64)
    weights = np.stack([lum, lum * v, lum * v * v, lum * age, lum * metallicity, mass])
    sums = convolve_psf(deposit(x_kpc, y_kpc, weights, edges), psf_fwhm_kpc / spaxel_kpc)
    return SpaxelMoments(edges, sums)


def observe_view(x_kpc: NDArray, y_kpc: NDArray, v_kms: NDArray, mass: NDArray, age: NDArray,
                 metallicity: NDArray, luminosity: NDArray, particle_count: NDArray,
                 half_width_kpc: float, min_particles_per_pixel: int, kpc_per_arcsec: float,
                 dist_mod: float, settings: IfuSettings, rng: np.random.Generator) -> IfuView:
    """The IFU-like maps of one view (projected particles, module docstring steps 2-6).

    ``particle_count`` (n, n): star particles per pixel of the model grid (the ideal maps'),
    whose size and half-width ``half_width_kpc`` set the output grid."""
    npix = particle_count.shape[0]
    spaxel_kpc = settings.spaxel_arcsec * kpc_per_arcsec
    psf_kpc = settings.psf_fwhm_arcsec * kpc_per_arcsec
    r_e = half_light_radius(x_kpc, y_kpc, luminosity)
    footprint = settings.footprint_effective_radii * r_e
    mom = spaxel_moments(x_kpc, y_kpc, v_kms, mass, age, metallicity, luminosity,
                         footprint + 2.0 * psf_kpc, spaxel_kpc, psf_kpc)
    edges = mom.edges_kpc
    n_sp = edges.size - 1
    centres = 0.5 * (edges[1:] + edges[:-1])
    xs, ys = np.meshgrid(centres, centres)  # [iy, ix]
    area_arcsec2 = settings.spaxel_arcsec**2
    lum = mom.luminosity
    # apparent flux in AB maggies: L / Lsun -> M = M_sun - 2.5 log10 L, m = M + DM
    flux = lum * 10.0 ** (-0.4 * (SUN_ABS_MAG_R_AB + dist_mod))
    snr = spaxel_snr(flux / area_arcsec2, settings)
    in_footprint = np.hypot(xs, ys) < footprint
    use = in_footprint & (snr >= settings.min_spaxel_snr) & (flux > 0)
    bin_of = np.full((n_sp, n_sp), -1, dtype=np.int64)
    sel = np.flatnonzero(use.ravel())
    index, bin_snr_values = voronoi_bins(xs.ravel()[sel] / spaxel_kpc,
                                         ys.ravel()[sel] / spaxel_kpc, flux.ravel()[sel],
                                         flux.ravel()[sel] / snr.ravel()[sel],
                                         settings.target_snr)
    bin_of.ravel()[sel] = index
    n_bins = int(bin_snr_values.size)

    # per-bin measurements from the bins' summed moments
    valid = bin_of >= 0
    b = bin_of[valid]
    sums = np.stack([np.bincount(b, s[valid], n_bins) for s in mom.sums])  # (6, n_bins)
    n_spaxels = np.bincount(b, minlength=n_bins)
    values = np.zeros((5, n_bins))
    if n_bins:
        v_bin, sigma_bin = kinematic_moments(sums[0], sums[1], sums[2])
        values[0] = sums[5] / (n_spaxels * spaxel_kpc**2)
        values[1], values[2] = v_bin, sigma_bin
        values[3] = sums[3] / sums[0]
        values[4] = sums[4] / sums[0]
    errors = measurement_errors(bin_snr_values, settings)
    observed = add_measurement_noise(values, errors, rng)

    # onto the model grid: exact overlap weights, luminosity-weighted except surface density
    dst = grid_edges(half_width_kpc, npix)
    w = overlap_matrix(edges, dst)
    per_spaxel = np.zeros((5, n_sp, n_sp))
    err_spaxel = np.zeros((5, n_sp, n_sp))
    per_spaxel[:, valid] = observed[:, b]
    err_spaxel[:, valid] = errors[:, b]
    lum_valid = np.where(valid, lum, 0.0)
    area_valid = valid.astype(np.float64)

    def resample(field: NDArray, weight: NDArray) -> NDArray:
        num = w @ (field * weight) @ w.T
        den = w @ weight @ w.T
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, 0.0)

    pixel_kpc = 2.0 * half_width_kpc / npix
    covered = (w @ area_valid @ w.T) * spaxel_kpc**2 / pixel_kpc**2
    mask = (covered >= settings.min_covered_fraction) & (particle_count >= min_particles_per_pixel)
    conditions = np.zeros((5, npix, npix))
    cond_err = np.zeros((5, npix, npix))
    for ch in range(5):
        weight = area_valid if ch == 0 else lum_valid
        conditions[ch] = resample(per_spaxel[ch], weight)
        cond_err[ch] = resample(err_spaxel[ch], weight)

    pc = 0.5 * (dst[1:] + dst[:-1])
    px, py = np.meshgrid(pc, pc)
    jx = np.floor((px - edges[0]) / spaxel_kpc).astype(np.int64)
    jy = np.floor((py - edges[0]) / spaxel_kpc).astype(np.int64)
    inside = (jx >= 0) & (jx < n_sp) & (jy >= 0) & (jy < n_sp)
    vbin = np.full((npix, npix), -1, dtype=np.int64)
    vbin[inside] = bin_of[jy[inside], jx[inside]]
    mask &= vbin >= 0  # the spaxel at the pixel centre belongs to a valid bin
    conditions *= mask
    cond_err *= mask
    snr_map = np.where(vbin >= 0, np.concatenate([bin_snr_values, [0.0]])[vbin], 0.0)
    flux_pix = w @ flux @ w.T
    with np.errstate(divide="ignore"):
        mu = np.where(flux_pix > 0, -2.5 * np.log10(flux_pix / (pixel_kpc / kpc_per_arcsec)**2),
                      99.0)
    return IfuView(
        conditions=conditions.astype(np.float32),
        condition_errors=cond_err.astype(np.float32),
        galaxy_mask=mask,
        footprint_mask=np.hypot(px, py) < footprint,
        voronoi_bin=vbin.astype(np.int32),
        bin_snr=snr_map.astype(np.float32),
        surface_brightness=np.minimum(mu, 99.0).astype(np.float32),
        effective_radius_kpc=r_e,
        n_bins=n_bins,
        n_spaxels_binned=int(valid.sum()),
        n_spaxels_per_side=n_sp,
    )


assert len(IFU_WEIGHTING) == len(MAP_CHANNELS) == len(ERROR_KEYS)

"""SDSS-like r-band mock images of TNG-layout galaxies (offline, seeded).

Pipeline per galaxy (the steps of the field's mock pipelines, e.g. RealSim, without its remote
queries): r-band AB absolute magnitude of every star particle (``GFM_StellarPhotometrics``
column 5) -> apparent flux in nanomaggies at the configured redshift (luminosity distance of the
snapshot Header's flat cosmology, astropy; no K-correction, < 0.05 mag at z = 0.05) -> random
line of sight -> angular positions (angular-diameter distance) binned onto the SDSS grid
(0.396 arcsec per pixel; flux of every particle inside the cutout kept exactly) -> convolution
with a GalSim PSF (Moffat or Kolmogorov, seeing FWHM drawn per image from a log-normal) ->
sky, Poisson and read noise with SDSS's gain (``galsim.CCDNoise``), the sky subtracted again as
in SDSS ``frame`` files, or insertion into a real sky cutout -> resampling to the model input
(2x2 flux-summing rebin or central crop) -> one asinh stretch shared by every image set.

Images are indexed ``[y, x]``; the cutout centre (the subhalo position) sits at pixel-edge
coordinate ``npix / 2`` on both axes.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM
from numpy.typing import NDArray
from scipy.signal import fftconvolve

from simbridge import units
from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.models.training import derive_seed

log = logging.getLogger(__name__)

SDSS_PIXEL_SCALE_ARCSEC = 0.396
#: SDSS nanomaggies: m_AB = 22.5 - 2.5 log10(f / nanomaggy)
NANOMAGGY_ZERO_POINT = 22.5
#: GFM_StellarPhotometrics columns: U, B, V, K, g, r, i, z
R_BAND_COLUMN = 5
#: magnitudes at or above this mean "no light" (the demo writes 99 for wind cells)
NO_LIGHT_MAGNITUDE = 90.0
ARCSEC_PER_RADIAN = 180.0 / np.pi * 3600.0
#: width of the smoothing-length groups (in ln sigma): kernels within 20% share one filter
SMOOTHING_BIN_LN = 0.2

#: Defaults of the ``realism.mocks`` config section (SDSS r band).
DEFAULT_MOCK_SETTINGS: dict[str, Any] = {
    "redshift": 0.05,
    "cutout_npix": 128,
    "model_npix": 64,
    "resample": "rebin",            # rebin: sum 2x2 blocks (flux kept); crop: central pixels
    "pixel_scale_arcsec": SDSS_PIXEL_SCALE_ARCSEC,
    "psf": {"profile": "moffat", "moffat_beta": 3.5,
            "seeing_fwhm_arcsec": {"median": 1.3, "sigma_ln": 0.15, "range": [0.8, 2.2]}},
    "sky_mag_per_arcsec2": 20.86,   # SDSS r-band dark sky
    "gain_e_per_dn": 4.7,
    "read_noise_e": 5.0,
    "nmgy_per_dn": 0.005,           # SDSS r-band calibration (frame NMGY header), typical
    "stretch": {"softening_nmgy": 0.05, "max_nmgy": 20.0},
    "min_luminous_particles": 20,
    # adaptive smoothing (sigma = half the distance to the n-th neighbour); 0: point particles
    "smoothing_neighbours": 32,
}


@dataclass(frozen=True)
class Cosmology:
    """Flat Lambda-CDM of a snapshot Header (h, Omega_m)."""

    hubble_param: float
    omega_matter: float

    def astropy(self) -> FlatLambdaCDM:
        return FlatLambdaCDM(H0=100.0 * self.hubble_param, Om0=self.omega_matter)

    def luminosity_distance_pc(self, z: float) -> float:
        return _distances(self.hubble_param, self.omega_matter, float(z))[0]

    def angular_diameter_distance_kpc(self, z: float) -> float:
        return _distances(self.hubble_param, self.omega_matter, float(z))[1]

    def kpc_per_arcsec(self, z: float) -> float:
        return self.angular_diameter_distance_kpc(z) / ARCSEC_PER_RADIAN


@functools.cache
def _distances(h: float, omega_m: float, z: float) -> tuple[float, float]:
    """(luminosity distance in pc, angular-diameter distance in kpc); astropy integrates."""
    c = FlatLambdaCDM(H0=100.0 * h, Om0=omega_m)
    return (float(c.luminosity_distance(z).to(u.pc).value),
            float(c.angular_diameter_distance(z).to(u.kpc).value))


def check_mock_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Mock settings over the defaults, checked; a bad value is a SimBridgeConfigError."""
    s = {**DEFAULT_MOCK_SETTINGS, **settings}
    s["psf"] = {**DEFAULT_MOCK_SETTINGS["psf"], **settings.get("psf", {})}
    s["stretch"] = {**DEFAULT_MOCK_SETTINGS["stretch"], **settings.get("stretch", {})}
    problems = []
    if not float(s["redshift"]) > 0:
        problems.append("redshift must be > 0 (a galaxy at z = 0 has no finite distance)")
    if s["resample"] not in ("rebin", "crop"):
        problems.append(f"resample = {s['resample']!r}; allowed: rebin, crop")
    elif s["resample"] == "rebin" and int(s["cutout_npix"]) != 2 * int(s["model_npix"]):
        problems.append("resample rebin needs cutout_npix = 2 x model_npix")
    elif s["resample"] == "crop" and int(s["cutout_npix"]) < int(s["model_npix"]):
        problems.append("resample crop needs cutout_npix >= model_npix")
    if s["psf"]["profile"] not in ("moffat", "kolmogorov"):
        problems.append(f"psf.profile = {s['psf']['profile']!r}; allowed: moffat, kolmogorov")
    lo, hi = s["psf"]["seeing_fwhm_arcsec"]["range"]
    if not 0 < lo <= hi:
        problems.append("psf.seeing_fwhm_arcsec.range must be [low, high] with 0 < low <= high")
    if problems:
        raise SimBridgeConfigError("realism.mocks: " + "; ".join(problems))
    return s


# --------------------------------------------------------------------------- photometry

def absolute_to_nanomaggies(abs_mag: NDArray, redshift: float, cosmo: Cosmology) -> NDArray:
    """Apparent flux (nanomaggies) of sources of AB absolute magnitude ``abs_mag`` at z."""
    distance_modulus = 5.0 * np.log10(cosmo.luminosity_distance_pc(redshift) / 10.0)
    apparent = np.asarray(abs_mag, dtype=np.float64) + distance_modulus
    return np.power(10.0, -0.4 * (apparent - NANOMAGGY_ZERO_POINT))


def luminous_particles(photometrics: NDArray, formation_a: NDArray) -> NDArray:
    """Mask of star particles (not wind cells) with a finite r-band magnitude."""
    mag = np.asarray(photometrics, dtype=np.float64)[:, R_BAND_COLUMN]
    return units.is_star_not_wind(formation_a) & np.isfinite(mag) & (mag < NO_LIGHT_MAGNITUDE)


def random_rotation(seed: int) -> NDArray:
    """A uniformly random rotation (rows: image x, image y, line of sight)."""
    q = np.random.default_rng(seed).normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def smoothing_lengths_kpc(pos_kpc: NDArray, n_neighbours: int) -> NDArray:
    """Adaptive smoothing of every particle: half the 3D distance to its n-th nearest
    neighbour (the Gaussian sigma; coarse particles in sparse regions spread further)."""
    from scipy.spatial import cKDTree

    pos = np.asarray(pos_kpc, dtype=np.float64)
    k = min(int(n_neighbours), len(pos) - 1)
    if k < 1:
        return np.zeros(len(pos))
    dist, _ = cKDTree(pos).query(pos, k=k + 1)
    return 0.5 * dist[:, -1]


def project_particles(pos_kpc: NDArray, flux_nmgy: NDArray, rotation: NDArray, redshift: float,
                      cosmo: Cosmology, npix: int, pixel_scale_arcsec: float,
                      smoothing_kpc: NDArray | None = None) -> tuple[NDArray, float]:
    """Bin particles (physical kpc about the galaxy centre) onto the sky grid at z.

    With ``smoothing_kpc`` each particle's light is a 2D Gaussian of that sigma (particles are
    grouped in bins of sigma 20% wide and each group's image is Gaussian-filtered; flux that
    the filter moves beyond the cutout is lost, as on the sky). Returns the image (nanomaggies
    per pixel, ``[y, x]``) and the fraction of the flux outside the cutout.
    """
    xy = np.asarray(pos_kpc, dtype=np.float64) @ rotation[:2].T
    kpc_per_pix = cosmo.kpc_per_arcsec(redshift) * pixel_scale_arcsec
    pix = xy / kpc_per_pix + 0.5 * npix
    flux_nmgy = np.asarray(flux_nmgy, dtype=np.float64)

    def deposit(sel: NDArray) -> NDArray:
        return np.histogram2d(pix[sel, 1], pix[sel, 0], bins=npix,
                              range=[[0, npix], [0, npix]], weights=flux_nmgy[sel])[0]

    if smoothing_kpc is None:
        image = deposit(np.ones(len(pix), bool))
    else:
        from scipy.ndimage import gaussian_filter

        # kernels wider than a quarter of the cutout are capped there (diffuse light)
        sigma_pix = np.minimum(np.asarray(smoothing_kpc, dtype=np.float64) / kpc_per_pix,
                               0.25 * npix)
        point = sigma_pix < 0.25  # narrower than a quarter pixel: a point source
        image = deposit(point)
        bins = np.floor(np.log(np.clip(sigma_pix, 0.25, None)) / SMOOTHING_BIN_LN).astype(int)
        for b in np.unique(bins[~point]):
            sel = ~point & (bins == b)
            sigma = float(np.exp((b + 0.5) * SMOOTHING_BIN_LN))
            # pad the grid so that light of particles just outside the cutout comes in
            pad = int(np.ceil(4.0 * sigma))
            big = npix + 2 * pad
            layer = np.histogram2d(pix[sel, 1] + pad, pix[sel, 0] + pad, bins=big,
                                   range=[[0, big], [0, big]], weights=flux_nmgy[sel])[0]
            layer = gaussian_filter(layer, sigma, mode="constant", truncate=4.0)
            image += layer[pad:pad + npix, pad:pad + npix]
    total = float(flux_nmgy.sum())
    outside = 1.0 - float(image.sum()) / total if total > 0 else 0.0
    return image, max(outside, 0.0)


def projected_half_light_radius_kpc(pos_kpc: NDArray, flux: NDArray, rotation: NDArray) -> float:
    """Circular radius in the image plane holding half of the r-band light."""
    r = np.linalg.norm(np.asarray(pos_kpc) @ rotation[:2].T, axis=1)
    order = np.argsort(r)
    cum = np.cumsum(np.asarray(flux, dtype=np.float64)[order])
    return float(r[order][np.searchsorted(cum, 0.5 * cum[-1])])


# --------------------------------------------------------------------------- PSF and noise

def draw_seeing_fwhm(settings: dict[str, Any], seed: int) -> float:
    """Seeing FWHM (arcsec) of one image: log-normal about the median, clipped to the range."""
    d = settings["psf"]["seeing_fwhm_arcsec"]
    rng = np.random.default_rng(seed)
    fwhm = float(d["median"]) * float(np.exp(rng.normal(0.0, float(d["sigma_ln"]))))
    return float(np.clip(fwhm, *d["range"]))


def psf_profile(settings: dict[str, Any], fwhm_arcsec: float) -> galsim.GSObject:
    """The GalSim PSF of one image."""
    if settings["psf"]["profile"] == "kolmogorov":
        return galsim.Kolmogorov(fwhm=fwhm_arcsec)
    return galsim.Moffat(beta=float(settings["psf"]["moffat_beta"]), fwhm=fwhm_arcsec)


def psf_image(settings: dict[str, Any], fwhm_arcsec: float) -> NDArray:
    """Pixel-integrated PSF on the image grid (odd size, centred, normalised to 1)."""
    scale = float(settings["pixel_scale_arcsec"])
    n = 2 * int(np.ceil(3.0 * fwhm_arcsec / scale)) + 1
    img = psf_profile(settings, fwhm_arcsec).drawImage(nx=n, ny=n, scale=scale).array
    return img / img.sum()


def convolve_psf(image: NDArray, kernel: NDArray) -> NDArray:
    """Image convolved with the PSF kernel (same size; flux near the edges may leave)."""
    return fftconvolve(image, kernel, mode="same")


def sky_level_nmgy_per_pixel(settings: dict[str, Any]) -> float:
    """Mean sky per pixel (nanomaggies) from the sky surface brightness."""
    per_arcsec2 = 10.0 ** (-0.4 * (float(settings["sky_mag_per_arcsec2"]) - NANOMAGGY_ZERO_POINT))
    return per_arcsec2 * float(settings["pixel_scale_arcsec"]) ** 2


def noise_sigma_nmgy(settings: dict[str, Any], signal_nmgy: NDArray | float = 0.0) -> NDArray:
    """Expected noise (nanomaggies) of a pixel holding ``signal_nmgy`` above the sky."""
    dn = float(settings["nmgy_per_dn"])
    gain, read = float(settings["gain_e_per_dn"]), float(settings["read_noise_e"])
    electrons = (np.asarray(signal_nmgy) + sky_level_nmgy_per_pixel(settings)) / dn * gain
    return np.sqrt(electrons + read**2) / gain * dn


def add_ccd_noise(image_nmgy: NDArray, settings: dict[str, Any], seed: int,
                  sky: bool = True) -> NDArray:
    """Sky, Poisson and read noise (galsim.CCDNoise, in DN with the SDSS gain); the mean sky is
    subtracted again (SDSS frames are sky-subtracted). ``sky=False``: only the image's own
    Poisson noise (insertion into a real sky cutout, which brings its own sky noise)."""
    dn = float(settings["nmgy_per_dn"])
    img = galsim.ImageD(np.asarray(image_nmgy, dtype=np.float64) / dn,
                        scale=float(settings["pixel_scale_arcsec"]))
    noise = galsim.CCDNoise(galsim.BaseDeviate(int(seed) % (2**31 - 1) + 1),
                            sky_level=sky_level_nmgy_per_pixel(settings) / dn if sky else 0.0,
                            gain=float(settings["gain_e_per_dn"]),
                            read_noise=float(settings["read_noise_e"]) if sky else 0.0)
    img.addNoise(noise)
    return img.array * dn


# --------------------------------------------------------------------------- model input

def resample(image: NDArray, settings: dict[str, Any]) -> NDArray:
    """Cutout -> model input: 2x2 flux-summing rebin, or the central model_npix pixels."""
    m = int(settings["model_npix"])
    image = np.asarray(image)
    lead = image.shape[:-2]
    if settings["resample"] == "rebin":
        return image.reshape(*lead, m, 2, m, 2).sum(axis=(-3, -1))
    start = (image.shape[-1] - m) // 2
    return image[..., start:start + m, start:start + m]


def asinh_stretch(image_nmgy: NDArray, settings: dict[str, Any]) -> NDArray:
    """The shared stretch: asinh(f / softening) / asinh(max / softening), clipped to [-1, 1]."""
    soft = float(settings["stretch"]["softening_nmgy"])
    top = np.arcsinh(float(settings["stretch"]["max_nmgy"]) / soft)
    return np.clip(np.arcsinh(np.asarray(image_nmgy) / soft) / top, -1.0, 1.0).astype(np.float32)


def model_input(image_nmgy: NDArray, settings: dict[str, Any]) -> NDArray:
    """Stretched model input of noisy cutouts (N, n, n) or one cutout."""
    return asinh_stretch(resample(image_nmgy, settings), settings)


# --------------------------------------------------------------------------- one galaxy

@dataclass
class MockImage:
    """One mock image and the properties the manifest records."""

    image_nmgy: NDArray
    noiseless_nmgy: NDArray
    psf_fwhm_arcsec: float
    total_flux_nmgy: float
    flux_outside_fraction: float
    half_light_radius_kpc: float
    half_light_radius_arcsec: float
    n_luminous: int


def mock_galaxy(pos_kpc: NDArray, photometrics: NDArray, formation_a: NDArray,
                settings: dict[str, Any], cosmo: Cosmology, seed: int,
                sky_cutout: NDArray | None = None) -> MockImage:
    """Mock r-band cutout of one galaxy from its star particles (physical kpc, centred).

    Raises SimBridgeInputError when fewer than ``min_luminous_particles`` particles carry light
    (the caller records the reason and skips the galaxy).
    """
    lum = luminous_particles(photometrics, formation_a)
    if int(lum.sum()) < int(settings["min_luminous_particles"]):
        raise SimBridgeInputError(
            f"galaxy has {int(lum.sum())} luminous star particles (finite r-band "
            f"GFM_StellarPhotometrics, not wind), fewer than min_luminous_particles = "
            f"{settings['min_luminous_particles']}", None,
            "it is skipped; lower realism.mocks.min_luminous_particles to keep such galaxies")
    z = float(settings["redshift"])
    flux = absolute_to_nanomaggies(np.asarray(photometrics)[lum, R_BAND_COLUMN], z, cosmo)
    pos = np.asarray(pos_kpc, dtype=np.float64)[lum]
    rotation = random_rotation(derive_seed(seed, "line-of-sight"))
    npix, scale = int(settings["cutout_npix"]), float(settings["pixel_scale_arcsec"])
    k = int(settings["smoothing_neighbours"])
    smoothing = smoothing_lengths_kpc(pos, k) if k > 0 else None
    raw, outside = project_particles(pos, flux, rotation, z, cosmo, npix, scale, smoothing)
    fwhm = draw_seeing_fwhm(settings, derive_seed(seed, "seeing"))
    noiseless = convolve_psf(raw, psf_image(settings, fwhm))
    if sky_cutout is None:
        noisy = add_ccd_noise(noiseless, settings, derive_seed(seed, "noise"))
    else:
        noisy = add_ccd_noise(noiseless, settings, derive_seed(seed, "noise"), sky=False)
        noisy = noisy + sky_cutout
    r_half = projected_half_light_radius_kpc(pos, flux, rotation)
    return MockImage(noisy.astype(np.float32), noiseless.astype(np.float32), fwhm,
                     float(flux.sum()), outside, r_half, r_half / cosmo.kpc_per_arcsec(z),
                     int(lum.sum()))


def empty_sky(settings: dict[str, Any], seed: int, sky_cutout: NDArray | None = None
              ) -> NDArray:
    """An empty-sky control cutout: the noise of the mocks without a galaxy."""
    n = int(settings["cutout_npix"])
    if sky_cutout is not None:
        return np.asarray(sky_cutout, dtype=np.float32)
    return add_ccd_noise(np.zeros((n, n)), settings, seed).astype(np.float32)


# --------------------------------------------------------------------------- real FITS cutouts

def read_sdss_cutout(path: str | Path, settings: dict[str, Any], band: str = "r") -> NDArray:
    """Read a user's SDSS cutout (FITS, nanomaggies) and return its central cutout_npix pixels.

    The header must hold a celestial WCS whose pixel scale is the configured one (within 2%)
    and, if it names a band (FILTER or BAND), the configured band.
    """
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    path = Path(path)
    fix = ("give SDSS r-band cutouts in nanomaggies with their WCS (e.g. cut from a frame-r-* "
           "file with astropy.nddata.Cutout2D, which keeps the WCS)")
    try:
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if getattr(h, "data", None) is not None
                        and np.ndim(h.data) == 2), None)
            if hdu is None:
                raise SimBridgeInputError("FITS file holds no 2D image", path, fix)
            header, data = hdu.header, np.asarray(hdu.data, dtype=np.float64)
    except OSError as err:
        raise SimBridgeInputError(f"cannot read FITS file ({err})", path, fix) from None
    named = str(header.get("FILTER", header.get("BAND", band))).strip().lower()
    if named != band:
        raise SimBridgeInputError(
            f"FITS cutout is of band {named!r}, not {band!r} (header FILTER/BAND)", path, fix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    if not wcs.has_celestial:
        raise SimBridgeInputError("FITS cutout has no celestial WCS (CTYPE/CRPIX/CD keywords)",
                                  path, fix)
    # pixel scale in the WCS's units (degrees for SDSS), in arcsec
    scale = float(np.mean(proj_plane_pixel_scales(wcs.celestial))) * 3600.0
    want = float(settings["pixel_scale_arcsec"])
    if abs(scale / want - 1.0) > 0.02:
        raise SimBridgeInputError(
            f"FITS cutout has {scale:.4f} arcsec per pixel, not {want} (SDSS)", path, fix)
    n = int(settings["cutout_npix"])
    if min(data.shape) < n:
        raise SimBridgeInputError(f"FITS cutout is {data.shape}, smaller than cutout_npix = {n}",
                                  path, "give larger cutouts or lower realism.mocks.cutout_npix")
    y0, x0 = (data.shape[0] - n) // 2, (data.shape[1] - n) // 2
    cut = data[y0:y0 + n, x0:x0 + n]
    if not np.isfinite(cut).all():
        raise SimBridgeInputError("FITS cutout holds non-finite pixels", path, fix)
    return cut.astype(np.float32)


def read_cutout_directory(directory: str | Path, settings: dict[str, Any]) -> tuple[
        list[Path], NDArray]:
    """All ``*.fits``/``*.fits.gz`` cutouts of a directory, sorted by name, read and checked."""
    directory = Path(directory).expanduser()
    files = sorted([*directory.glob("*.fits"), *directory.glob("*.fits.gz")])
    if not files:
        raise SimBridgeInputError("no *.fits cutouts found", directory,
                                  "point the realism config at a directory of FITS cutouts")
    return files, np.stack([read_sdss_cutout(f, settings) for f in files])

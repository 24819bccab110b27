"""Single-Sersic fits with the PSF (statmorph) and smooth Sersic "archetypes" (GalSim).

statmorph fits a 2D Sersic profile convolved with the image's PSF: fitting without the PSF
biases the index low, since the seeing flattens the core (an n = 2 profile blurred by a
1.3 arcsec seeing fits as n ~ 1.2 without it). An archetype is the fitted profile rendered
noiseless with GalSim, convolved with the *same* PSF, with the same sky and noise added: it keeps
the global properties (flux, size, shape, index) and the background and loses the details.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import galsim
import numpy as np
from numpy.typing import NDArray
from scipy.special import gamma, gammaincinv

from simbridge.extract import mock_images

log = logging.getLogger(__name__)

#: GalSim's Sersic profiles accept 0.3 <= n <= 6.2
SERSIC_N_RANGE = (0.3, 6.2)


@dataclass
class SersicFit:
    """A Sersic fit on one image (pixel units on its grid; theta in radians from +x)."""

    ok: bool
    reason: str
    sersic_n: float = math.nan
    sersic_rhalf_pix: float = math.nan  # semi-major axis half-light radius
    sersic_amplitude: float = math.nan  # surface brightness at rhalf (image units per pixel)
    sersic_ellip: float = math.nan
    sersic_theta: float = math.nan
    sersic_xc: float = math.nan
    sersic_yc: float = math.nan
    gini: float = math.nan
    m20: float = math.nan
    concentration: float = math.nan

    def as_row(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


def segmentation_map(image: NDArray, noise_sigma: NDArray | float, nsigma: float = 2.0,
                     npixels: int = 10) -> NDArray | None:
    """The source at the image centre (photutils detect_sources), or None if none is there."""
    from photutils.segmentation import detect_sources

    threshold = nsigma * np.broadcast_to(noise_sigma, image.shape)
    segm = detect_sources(image, threshold, n_pixels=npixels)
    if segm is None:
        return None
    data = segm.data
    cy, cx = (s // 2 for s in image.shape)
    label = data[cy, cx]
    if label == 0:  # the source closest to the centre
        ys, xs = np.nonzero(data)
        k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        label = data[ys[k], xs[k]]
    return (data == label).astype(np.int32)


def fit_sersic(image: NDArray, psf: NDArray, noise_sigma: NDArray | float, gain: float
               ) -> SersicFit:
    """Fit one PSF-convolved Sersic profile to ``image`` (statmorph.source_morphology).

    ``gain`` converts the image to counts for statmorph's weight map (electrons per image unit).
    """
    import statmorph

    segmap = segmentation_map(image, noise_sigma)
    if segmap is None:
        return SersicFit(False, "no source detected at 2 sigma")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = statmorph.source_morphology(image, segmap, gain=gain, psf=psf)[0]
        except Exception as err:  # noqa: BLE001 - statmorph raises many kinds on odd images
            return SersicFit(False, f"statmorph failed: {type(err).__name__}: {err}")
    values = [m.sersic_n, m.sersic_rhalf, m.sersic_amplitude, m.sersic_ellip, m.sersic_theta,
              m.sersic_xc, m.sersic_yc]
    if m.flag_sersic >= 2 or not np.all(np.isfinite(values)) or m.sersic_rhalf <= 0:
        return SersicFit(False, f"Sersic fit flagged (flag_sersic = {m.flag_sersic})")
    if not SERSIC_N_RANGE[0] <= m.sersic_n <= SERSIC_N_RANGE[1]:
        return SersicFit(False, f"Sersic n = {m.sersic_n:.3g} outside the range GalSim renders "
                         f"({SERSIC_N_RANGE[0]}-{SERSIC_N_RANGE[1]})")
    return SersicFit(True, "", float(m.sersic_n), float(m.sersic_rhalf),
                     float(m.sersic_amplitude), float(m.sersic_ellip), float(m.sersic_theta),
                     float(m.sersic_xc), float(m.sersic_yc), float(m.gini), float(m.m20),
                     float(m.concentration))


def sersic_total_flux(amplitude: float, rhalf_major: float, n: float, ellip: float) -> float:
    """Total flux of an elliptical Sersic profile with surface brightness ``amplitude`` at the
    semi-major half-light radius (astropy Sersic2D's parametrisation)."""
    b = float(gammaincinv(2.0 * n, 0.5))
    q = 1.0 - ellip
    return float(2.0 * np.pi * q * rhalf_major**2 * amplitude * n * np.exp(b)
                 * gamma(2.0 * n) / b ** (2.0 * n))


def render_sersic(fit: SersicFit, npix: int, psf_kernel: NDArray, scale: float,
                  oversample: int = 4) -> NDArray:
    """Noiseless Sersic model of a fit on an npix grid ([y, x]), pixel-integrated (drawn
    ``oversample`` times finer in real space and summed) and convolved with the pixel-integrated
    PSF kernel, exactly as the mocks are."""
    n = float(fit.sersic_n)
    if not SERSIC_N_RANGE[0] <= n <= SERSIC_N_RANGE[1]:
        raise ValueError(f"Sersic n = {n:.3g} outside GalSim's range {SERSIC_N_RANGE}")
    q = float(np.clip(1.0 - fit.sersic_ellip, 0.05, 1.0))
    flux = sersic_total_flux(fit.sersic_amplitude, fit.sersic_rhalf_pix, n, fit.sersic_ellip)
    # GalSim shears preserve area: a circular r_h becomes a semi-major axis r_h / sqrt(q)
    profile = galsim.Sersic(n=n, half_light_radius=fit.sersic_rhalf_pix * math.sqrt(q) * scale,
                            flux=flux).shear(q=q, beta=fit.sersic_theta * galsim.radians)
    # statmorph centres are pixel-centre coordinates from 0; the true centre of an even
    # GalSim grid sits at npix/2 - 0.5 in those coordinates
    offset = galsim.PositionD((fit.sersic_xc - (npix / 2 - 0.5)) * oversample,
                              (fit.sersic_yc - (npix / 2 - 0.5)) * oversample)
    fine = profile.drawImage(nx=npix * oversample, ny=npix * oversample,
                             scale=scale / oversample, offset=offset, method="no_pixel").array
    # no_pixel samples flux per fine pixel: the sum over a block is the flux of a pixel
    image = fine.reshape(npix, oversample, npix, oversample).sum(axis=(1, 3))
    return mock_images.convolve_psf(image, psf_kernel)


def archetype_image(fit: SersicFit, psf_fwhm_arcsec: float, settings: dict[str, Any],
                    seed: int, sky_cutout: NDArray | None = None) -> tuple[NDArray, NDArray]:
    """The archetype of an observed image: (noisy, noiseless) cutouts in nanomaggies."""
    scale = float(settings["pixel_scale_arcsec"])
    npix = int(settings["cutout_npix"])
    kernel = mock_images.psf_image(settings, psf_fwhm_arcsec)
    noiseless = render_sersic(fit, npix, kernel, scale)
    if sky_cutout is None:
        noisy = mock_images.add_ccd_noise(noiseless, settings, seed)
    else:
        noisy = mock_images.add_ccd_noise(noiseless, settings, seed, sky=False) + sky_cutout
    return noisy.astype(np.float32), noiseless.astype(np.float32)

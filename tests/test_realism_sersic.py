"""Sersic fits with the PSF (statmorph) and archetypes rendered with the same PSF and noise."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.modeling.models import Sersic2D

from simbridge.extract import mock_images as mi
from simbridge.extract import sersic_fit as sf

S = mi.check_mock_settings({"cutout_npix": 64, "model_npix": 32})
SCALE = 0.396
GAIN = S["gain_e_per_dn"] / S["nmgy_per_dn"]


def exact_sersic(n=2.0, r_half_arcsec=2.0, q=0.7, beta=0.5, flux=150.0, fwhm=1.3,
                 offset=(0.3, -0.2)) -> np.ndarray:
    """An exact Sersic profile convolved with the Moffat PSF, drawn by GalSim (FFT path)."""
    prof = galsim.Sersic(n=n, half_light_radius=r_half_arcsec, flux=flux).shear(
        q=q, beta=beta * galsim.radians)
    return galsim.Convolve(prof, mi.psf_profile(S, fwhm)).drawImage(
        nx=64, ny=64, scale=SCALE, offset=galsim.PositionD(*offset)).array


@pytest.fixture(scope="module")
def fitted():
    truth = exact_sersic()
    noisy = mi.add_ccd_noise(truth, S, seed=5)
    fit = sf.fit_sersic(noisy, mi.psf_image(S, 1.3), mi.noise_sigma_nmgy(S, 0.0), GAIN)
    return truth, noisy, fit


def test_fit_with_the_psf_recovers_an_exact_sersic(fitted):
    _, _, fit = fitted
    assert fit.ok, fit.reason
    assert fit.sersic_n == pytest.approx(2.0, rel=0.06)
    # GalSim's half-light radius is circularised: the semi-major one is r / sqrt(q)
    assert fit.sersic_rhalf_pix * SCALE == pytest.approx(2.0 / np.sqrt(0.7), rel=0.05)
    assert fit.sersic_ellip == pytest.approx(0.3, abs=0.03)
    assert fit.sersic_theta % np.pi == pytest.approx(0.5, abs=0.05)
    assert fit.sersic_xc == pytest.approx(31.5 + 0.3, abs=0.1)
    assert fit.sersic_yc == pytest.approx(31.5 - 0.2, abs=0.1)


def test_fit_without_the_psf_biases_the_index_low(fitted):
    _, noisy, fit = fitted
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    blind = sf.fit_sersic(noisy, delta, mi.noise_sigma_nmgy(S, 0.0), GAIN)
    assert blind.sersic_n < fit.sersic_n - 0.3


def test_total_flux_formula_against_astropy_sersic2d():
    amp, r_eff, n, ellip = 0.7, 5.0, 2.5, 0.4
    y, x = (np.mgrid[-800:800, -800:800] + 0.5) * 0.25  # cell centres, no cusp sample
    model = Sersic2D(amplitude=amp, r_eff=r_eff, n=n, x_0=0, y_0=0, ellip=ellip, theta=0.3)
    assert model(x, y).sum() * 0.25**2 == pytest.approx(
        sf.sersic_total_flux(amp, r_eff, n, ellip), rel=0.01)


def test_archetype_equals_galsims_own_convolution_of_the_fitted_profile(fitted):
    truth, _, fit = fitted
    kernel = mi.psf_image(S, 1.3)
    rendered = sf.render_sersic(fit, 64, kernel, SCALE)
    q = 1 - fit.sersic_ellip
    flux = sf.sersic_total_flux(fit.sersic_amplitude, fit.sersic_rhalf_pix, fit.sersic_n,
                                fit.sersic_ellip)
    prof = galsim.Sersic(n=fit.sersic_n, half_light_radius=fit.sersic_rhalf_pix * np.sqrt(q)
                         * SCALE, flux=flux).shear(q=q, beta=fit.sersic_theta * galsim.radians)
    ref = galsim.Convolve(prof, mi.psf_profile(S, 1.3)).drawImage(
        nx=64, ny=64, scale=SCALE, offset=galsim.PositionD(fit.sersic_xc - 31.5,
                                                           fit.sersic_yc - 31.5)).array
    assert np.abs(rendered - ref).max() < 0.02 * ref.max()
    # and the archetype reproduces the truth's global shape and flux
    assert rendered.sum() == pytest.approx(truth.sum(), rel=0.03)
    assert np.abs(rendered - truth).max() < 0.05 * truth.max()


def test_archetype_noise_is_the_configured_noise(fitted):
    _, _, fit = fitted
    noisy, noiseless = sf.archetype_image(fit, 1.3, S, seed=9)
    resid = (noisy - noiseless) / mi.noise_sigma_nmgy(S, np.clip(noiseless, 0, None))
    assert resid.std() == pytest.approx(1.0, abs=0.05)
    assert abs(resid.mean()) < 0.05


def test_no_source_and_out_of_range_index_are_reported():
    empty = mi.add_ccd_noise(np.zeros((64, 64)), S, seed=1)
    fit = sf.fit_sersic(empty, mi.psf_image(S, 1.3), mi.noise_sigma_nmgy(S, 0.0) * 3, GAIN)
    assert not fit.ok and fit.reason
    bad = sf.SersicFit(True, "", sersic_n=8.0, sersic_rhalf_pix=5, sersic_amplitude=1,
                       sersic_ellip=0.1, sersic_theta=0, sersic_xc=31.5, sersic_yc=31.5)
    with pytest.raises(ValueError, match="outside GalSim's range"):
        sf.render_sersic(bad, 64, mi.psf_image(S, 1.3), SCALE)

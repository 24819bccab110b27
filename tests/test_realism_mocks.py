"""Mock SDSS images: flux conservation, redshift scaling, noise statistics, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from scipy.integrate import quad

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract import mock_images as mi

H, OM = 0.6774, 0.3089
COSMO = mi.Cosmology(H, OM)
C_KMS = 299792.458


def comoving_distance_mpc(z: float) -> float:
    """Independent reference: D_C = c/H0 int dz / E(z) of flat Lambda-CDM (radiation-free)."""
    integral = quad(lambda x: 1.0 / np.sqrt(OM * (1 + x) ** 3 + 1 - OM), 0.0, z)[0]
    return C_KMS / (100.0 * H) * integral


def settings(**kw) -> dict:
    return mi.check_mock_settings({"cutout_npix": 64, "model_npix": 32, **kw})


def blob(n: int = 4000, sigma_kpc: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, sigma_kpc, (n, 3)), rng.uniform(0.5, 1.5, n)


def test_projection_and_psf_conserve_flux():
    s = settings(redshift=0.1)
    pos, flux = blob()
    image, outside = mi.project_particles(pos, flux, np.eye(3), 0.1, COSMO, 64, 0.396)
    assert outside == pytest.approx(0.0, abs=1e-12)
    assert image.sum() == pytest.approx(flux.sum(), rel=1e-12)
    for profile in ("moffat", "kolmogorov"):
        s["psf"]["profile"] = profile
        kernel = mi.psf_image(s, 1.4)
        assert kernel.sum() == pytest.approx(1.0, rel=1e-12)
        assert mi.convolve_psf(image, kernel).sum() == pytest.approx(flux.sum(), rel=1e-6)
    # rebinning to the model input keeps the flux too
    assert mi.resample(image, s).sum() == pytest.approx(flux.sum(), rel=1e-12)


def test_flux_scales_with_luminosity_distance_from_an_independent_integral():
    for z in (0.02, 0.05, 0.1):
        d_l_pc = comoving_distance_mpc(z) * (1 + z) * 1e6
        expected = 10 ** (-0.4 * (-21.0 + 5 * np.log10(d_l_pc / 10.0) - 22.5))
        assert mi.absolute_to_nanomaggies(np.array([-21.0]), z, COSMO)[0] == pytest.approx(
            expected, rel=2e-4)
    ratio = (mi.absolute_to_nanomaggies(np.array([-21.0]), 0.05, COSMO)[0]
             / mi.absolute_to_nanomaggies(np.array([-21.0]), 0.1, COSMO)[0])
    d1, d2 = comoving_distance_mpc(0.05) * 1.05, comoving_distance_mpc(0.1) * 1.1
    assert ratio == pytest.approx((d2 / d1) ** 2, rel=2e-4)


def second_moment_radius(image: np.ndarray) -> float:
    y, x = np.indices(image.shape) + 0.5
    w = image / image.sum()
    xc, yc = (w * x).sum(), (w * y).sum()
    return float(np.sqrt((w * ((x - xc) ** 2 + (y - yc) ** 2)).sum()))


def test_angular_size_scales_with_angular_diameter_distance():
    pos, flux = blob(n=20000, sigma_kpc=1.0)
    sizes = {}
    for z in (0.05, 0.1):
        image, _ = mi.project_particles(pos, flux, np.eye(3), z, COSMO, 64, 0.396)
        sizes[z] = second_moment_radius(image)
    d_a = {z: comoving_distance_mpc(z) / (1 + z) for z in (0.05, 0.1)}
    # pixelisation adds 1/12 px^2 per axis to the second moment
    corrected = {z: np.sqrt(r**2 - 2 / 12) for z, r in sizes.items()}
    assert corrected[0.05] / corrected[0.1] == pytest.approx(d_a[0.1] / d_a[0.05], rel=0.01)
    expected_px = np.sqrt(2) * 1.0 / (d_a[0.1] * 1e3) * mi.ARCSEC_PER_RADIAN / 0.396
    assert corrected[0.1] == pytest.approx(expected_px, rel=0.02)


def test_noise_matches_the_configured_sky_gain_and_read_noise():
    s = mi.check_mock_settings({"cutout_npix": 256, "model_npix": 128})
    sky_e = mi.sky_level_nmgy_per_pixel(s) / s["nmgy_per_dn"] * s["gain_e_per_dn"]
    expected_var = (sky_e + s["read_noise_e"] ** 2) / s["gain_e_per_dn"] ** 2 * s[
        "nmgy_per_dn"] ** 2
    empty = mi.add_ccd_noise(np.zeros((256, 256)), s, seed=1)
    n = empty.size
    assert abs(empty.mean()) < 4 * np.sqrt(expected_var / n)  # the sky is subtracted again
    assert empty.var() == pytest.approx(expected_var, rel=4 * np.sqrt(2 / n))
    assert mi.noise_sigma_nmgy(s, 0.0) ** 2 == pytest.approx(expected_var, rel=1e-12)
    # a flat source adds its own Poisson variance (electrons / gain^2)
    signal = np.full((256, 256), 2.0)
    noisy = mi.add_ccd_noise(signal, s, seed=2)
    want = mi.noise_sigma_nmgy(s, 2.0) ** 2
    assert (noisy - signal).var() == pytest.approx(want, rel=4 * np.sqrt(2 / n))
    # seeded: same seed, same noise
    assert np.array_equal(empty, mi.add_ccd_noise(np.zeros((256, 256)), s, seed=1))


def test_seeing_is_drawn_from_the_configured_distribution():
    s = settings()
    draws = np.array([mi.draw_seeing_fwhm(s, k) for k in range(2000)])
    lo, hi = s["psf"]["seeing_fwhm_arcsec"]["range"]
    assert draws.min() >= lo and draws.max() <= hi
    assert np.median(draws) == pytest.approx(s["psf"]["seeing_fwhm_arcsec"]["median"], rel=0.02)


def test_galaxy_without_luminous_particles_is_a_clear_error():
    s = settings(redshift=0.1)
    pos, _ = blob(n=100)
    phot = np.full((100, 8), 99.0)
    a_form = np.full(100, 0.5)
    with pytest.raises(SimBridgeInputError, match="luminous star particles"):
        mi.mock_galaxy(pos, phot, a_form, s, COSMO, seed=1)
    # wind cells (formation time <= 0) carry no light either
    phot[:, mi.R_BAND_COLUMN] = -15.0
    with pytest.raises(SimBridgeInputError, match="luminous"):
        mi.mock_galaxy(pos, phot, np.zeros(100), s, COSMO, seed=1)
    image = mi.mock_galaxy(pos, phot, a_form, s, COSMO, seed=1)
    assert image.n_luminous == 100 and image.image_nmgy.shape == (64, 64)


def write_fits(path, data, wcs: bool = True, band: str | None = "r", scale: float = 0.396):
    header = fits.Header()
    if wcs:
        header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 32.0,
                       "CRPIX2": 32.0, "CRVAL1": 150.0, "CRVAL2": 2.0,
                       "CD1_1": -scale / 3600, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": scale / 3600})
    if band is not None:
        header["FILTER"] = band
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)


def test_fits_cutouts_without_wcs_or_of_another_band_are_rejected(tmp_path):
    s = settings()
    data = np.random.default_rng(0).normal(0, 0.03, (80, 80))
    write_fits(tmp_path / "good.fits", data)
    cut = mi.read_sdss_cutout(tmp_path / "good.fits", s)
    assert cut.shape == (64, 64) and np.allclose(cut, data[8:72, 8:72], atol=1e-6)
    write_fits(tmp_path / "nowcs.fits", data, wcs=False)
    with pytest.raises(SimBridgeInputError, match="WCS") as err:
        mi.read_sdss_cutout(tmp_path / "nowcs.fits", s)
    assert "nowcs.fits" in str(err.value)
    write_fits(tmp_path / "g.fits", data, band="g")
    with pytest.raises(SimBridgeInputError, match="band 'g'"):
        mi.read_sdss_cutout(tmp_path / "g.fits", s)
    write_fits(tmp_path / "coarse.fits", data, scale=1.0)
    with pytest.raises(SimBridgeInputError, match="arcsec per pixel"):
        mi.read_sdss_cutout(tmp_path / "coarse.fits", s)


def test_sky_cutout_insertion_keeps_the_real_sky(tmp_path):
    s = settings(redshift=0.1)
    sky = np.random.default_rng(3).normal(0, 0.03, (64, 64)).astype(np.float32)
    pos, flux = blob(n=500)
    phot = np.full((500, 8), -15.0)
    a_form = np.full(500, 0.5)
    with_sky = mi.mock_galaxy(pos, phot, a_form, s, COSMO, seed=1, sky_cutout=sky)
    far = np.zeros((64, 64), bool)
    far[:4], far[-4:] = True, True
    assert np.allclose(with_sky.image_nmgy[far], sky[far], atol=1e-3)


def test_bad_mock_settings_name_the_key():
    with pytest.raises(SimBridgeConfigError, match="resample"):
        mi.check_mock_settings({"resample": "zoom"})
    with pytest.raises(SimBridgeConfigError, match="2 x model_npix"):
        mi.check_mock_settings({"cutout_npix": 100, "model_npix": 64})

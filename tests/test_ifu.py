"""IFU-like condition maps: PSF and rebinning, angular scale, Voronoi bins, noise, beam
smearing of a rotating disk, and the second demo configuration end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml
from scipy import integrate

from simbridge.extract import ifu
from tests.conftest import ROOT, small_config

SETTINGS = ifu.IfuSettings.from_config({
    "redshift": 0.05, "psf_fwhm_arcsec": 2.5, "spaxel_arcsec": 0.5,
    "footprint_effective_radii": 1.5, "min_spaxel_snr": 1.0, "target_snr": 10.0,
    "min_covered_fraction": 0.5,
    "depth": {"reference_surface_brightness_mag_arcsec2": 23.0,
              "snr_per_spaxel_at_reference": 3.0, "sky_surface_brightness_mag_arcsec2": 20.8},
    "errors": {"reference_snr": 10.0, "exponent": 1.0, "stellar_mass_surface_density_dex": 0.1,
               "los_velocity_kms": 12.0, "los_velocity_dispersion_kms": 15.0,
               "stellar_age_dex": 0.15, "metallicity_dex": 0.15},
})


def test_psf_conserves_flux_and_has_the_configured_width():
    img = np.zeros((1, 101, 101))
    img[0, 50, 50] = 3.0
    img[0, 40, 62] = 1.5
    out = ifu.convolve_psf(img, fwhm_cells=5.0)[0]
    assert out.sum() == pytest.approx(4.5, rel=1e-10)
    # the point source's profile: second moment = sigma^2 = (FWHM / 2.3548)^2 per axis
    single = ifu.convolve_psf(img[:, :, :] * (np.arange(101)[None, None, :] == 50)
                              * (np.arange(101)[None, :, None] == 50), 5.0)[0]
    c = np.arange(101) - 50.0
    var_x = (single.sum(0) * c**2).sum() / single.sum()
    assert math.sqrt(var_x) * ifu.FWHM_PER_SIGMA == pytest.approx(5.0, rel=0.01)


def test_spaxel_rebinning_conserves_flux_for_any_pair_of_grids():
    rng = np.random.default_rng(1)
    src_edges = ifu.grid_edges(10.0, 40)  # 0.5 per cell
    flux = rng.random((40, 40))
    for n_dst, half in ((16, 10.0), (64, 10.0), (33, 12.5)):  # coarser, finer, wider-offset
        dst = ifu.grid_edges(half, n_dst)
        out = ifu.rebin_flux(flux, src_edges, dst)
        assert out.sum() == pytest.approx(flux.sum(), rel=1e-12)
    # brute force: a destination cell's flux is the area-weighted sum of the source cells
    dst = ifu.grid_edges(10.0, 7)
    out = ifu.rebin_flux(flux, src_edges, dst)
    i, j = 3, 5
    brute = 0.0
    for a in range(40):
        for b in range(40):
            oy = max(0.0, min(dst[i + 1], src_edges[a + 1]) - max(dst[i], src_edges[a]))
            ox = max(0.0, min(dst[j + 1], src_edges[b + 1]) - max(dst[j], src_edges[b]))
            brute += flux[a, b] * oy * ox / 0.25
    assert out[i, j] == pytest.approx(brute, rel=1e-12)


def test_deposit_keeps_every_particle_inside_the_grid():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(-6, 6, (2, 5000))
    w = rng.random(5000)
    edges = ifu.grid_edges(5.0, 20)
    out = ifu.deposit(x, y, w, edges)[0]
    inside = (np.abs(x) < 5) & (np.abs(y) < 5)
    assert out.sum() == pytest.approx(w[inside].sum(), rel=1e-12)
    h, _, _ = np.histogram2d(y, x, bins=[edges, edges], weights=w)
    np.testing.assert_allclose(out, h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("z", [0.01, 0.03, 0.1, 0.5])
def test_angular_scale_and_distance_match_a_direct_integral(z):
    h, om, ol = 0.6774, 0.3089, 0.6911
    c_kms = 299792.458
    ok = 1.0 - om - ol
    e = lambda zz: math.sqrt(om * (1 + zz) ** 3 + ok * (1 + zz) ** 2 + ol)  # noqa: E731
    d_c = c_kms / (100 * h) * integrate.quad(lambda zz: 1.0 / e(zz), 0.0, z, epsabs=0,
                                             epsrel=1e-12)[0]  # Mpc (flat enough: ok ~ 0)
    d_a_kpc = d_c / (1 + z) * 1e3
    expected = d_a_kpc * math.pi / (180 * 3600)
    assert ifu.angular_scale_kpc_per_arcsec(z, h, om, ol) == pytest.approx(expected, rel=1e-6)
    d_l_pc = d_c * (1 + z) * 1e6
    assert ifu.distance_modulus(z, h, om, ol) == pytest.approx(
        5 * math.log10(d_l_pc / 10), abs=1e-5)


def test_every_voronoi_bin_reaches_the_target_snr():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[-20:21, -20:21].astype(float)
    r = np.hypot(xx, yy)
    keep = r < 20
    signal = 100.0 * np.exp(-r[keep] / 4.0) + 0.5
    noise = np.sqrt(signal + 4.0) * rng.uniform(0.8, 1.2, signal.size)
    index, snr = ifu.voronoi_bins(xx[keep], yy[keep], signal, noise, target_snr=10.0)
    good = index >= 0
    assert good.all()  # bins below the target are merged, none dropped
    n_bins = int(index.max()) + 1
    assert snr.size == n_bins and n_bins > 10
    for b in range(n_bins):  # recomputed from the pixels, independently of voronoi_bins
        sel = index == b
        assert signal[sel].sum() / math.sqrt((noise[sel] ** 2).sum()) >= 10.0 * (1 - 1e-9)
    # pixels already above the target stay alone in their bin (vorbin keeps them unbinned)
    assert np.bincount(index[good]).min() >= 1
    # all pixels together below the target: no bin
    index, snr = ifu.voronoi_bins(xx[keep][:3], yy[keep][:3], np.ones(3), np.ones(3) * 10, 10.0)
    assert (index == -1).all() and snr.size == 0


def test_measurement_noise_has_the_configured_statistics():
    n = 200_000
    snr = np.full(n, 20.0)
    errors = ifu.measurement_errors(snr, SETTINGS)
    # err = err_ref (S/N_ref / S/N)^exponent: at S/N 20, half the S/N-10 errors
    np.testing.assert_allclose(errors[:, 0], np.asarray(SETTINGS.errors) * 0.5)
    values = np.stack([np.full(n, 1e8), np.full(n, 30.0), np.full(n, 200.0),
                       np.full(n, 5.0), np.full(n, 0.02)])
    out = ifu.add_measurement_noise(values, errors, np.random.default_rng(4))
    tol = 4.0 / math.sqrt(n)  # 4 sigma on a mean of unit-variance draws
    for ch, (_, in_dex) in enumerate(ifu.ERROR_KEYS):
        dev = np.log10(out[ch] / values[ch]) if in_dex else out[ch] - values[ch]
        z = dev / errors[ch]
        assert abs(z.mean()) < tol, ch
        assert abs(z.std() - 1.0) < 2 * tol, ch
    # S/N from the surface brightness: S/N_ref at the reference, photon-noise scaling
    i_ref = 10 ** (-0.4 * 23.0)
    assert ifu.spaxel_snr(np.array([i_ref]), SETTINGS)[0] == pytest.approx(3.0)
    i_sky = 10 ** (-0.4 * 20.8)
    bright = ifu.spaxel_snr(np.array([1e4 * i_ref]), SETTINGS)[0]
    assert bright == pytest.approx(3.0 * 1e4 * math.sqrt((i_ref + i_sky) / (1e4 * i_ref + i_sky)))


def _rotating_disk(n: int, rng: np.random.Generator):
    """An inclined exponential disk with a flat rotation curve (projected positions, v_los)."""
    r = rng.gamma(2.0, 1.5, n)  # exponential surface density, scale length 1.5 kpc
    phi = rng.uniform(0, 2 * np.pi, n)
    inc = np.radians(60.0)
    x, y_disk = r * np.cos(phi), r * np.sin(phi)
    v_circ = 200.0 * np.tanh(r / 1.0)
    v_los = v_circ * np.cos(phi) * np.sin(inc) + rng.normal(0, 20.0, n)
    return x, y_disk * np.cos(inc), v_los


def test_psf_smeared_rotating_disk_velocity_matches_a_direct_sum():
    rng = np.random.default_rng(5)
    x, y, v = _rotating_disk(40_000, rng)
    lum = rng.uniform(0.5, 1.5, x.size)
    ones = np.ones_like(x)
    spaxel, fwhm = 0.25, 1.5  # kpc
    mom = ifu.spaxel_moments(x, y, v, ones, ones, ones, lum, 8.0, spaxel, fwhm)
    v_map, sigma_map = mom.velocity_and_dispersion()
    centres = 0.5 * (mom.edges_kpc[1:] + mom.edges_kpc[:-1])
    s2 = (fwhm / ifu.FWHM_PER_SIGMA) ** 2
    rows = [(iy, ix) for iy in range(10, centres.size - 10, 7)
            for ix in range(10, centres.size - 10, 7)]
    for iy, ix in rows:  # brute force: PSF-weighted luminosity sum over the particles
        w = lum * np.exp(-((x - centres[ix]) ** 2 + (y - centres[iy]) ** 2) / (2 * s2))
        v_direct = (w * v).sum() / w.sum()
        sigma_direct = math.sqrt((w * v * v).sum() / w.sum() - v_direct**2)
        # nearest-spaxel deposition moves a particle by <= half a spaxel: ~1% of the PSF
        assert v_map[iy, ix] == pytest.approx(v_direct, abs=3.0)
        assert sigma_map[iy, ix] == pytest.approx(sigma_direct, rel=0.03, abs=2.0)
    # beam smearing: near the centre the dispersion exceeds the intrinsic 20 km/s
    c = centres.size // 2
    assert sigma_map[c, c] > 40.0
    assert ifu.half_light_radius(x, y, lum) > 0


def test_observe_view_masks_outside_footprint_and_is_seeded():
    rng = np.random.default_rng(6)
    x, y, v = _rotating_disk(20_000, rng)
    n = x.size
    mass, age, z = np.full(n, 1e6), rng.uniform(1, 10, n), np.full(n, 0.02)
    lum = np.full(n, 1e6)
    npix, half = 32, 12.0
    count = ifu.deposit(x, y, np.ones(n), ifu.grid_edges(half, npix))[0]
    args = (x, y, v, mass, age, z, lum, count, half, 1, 1.0, 36.0, SETTINGS)
    a = ifu.observe_view(*args, np.random.default_rng(7))
    b = ifu.observe_view(*args, np.random.default_rng(7))
    np.testing.assert_array_equal(a.conditions, b.conditions)
    assert a.galaxy_mask.any() and a.n_bins > 0
    pc = (np.arange(npix) + 0.5) * 2 * half / npix - half
    r = np.hypot(pc[None, :], pc[:, None])
    assert not a.galaxy_mask[r > 1.5 * a.effective_radius_kpc + 2 * half / npix].any()
    assert (a.conditions[:, ~a.galaxy_mask] == 0).all()
    assert (a.bin_snr[a.voronoi_bin >= 0] >= SETTINGS.target_snr * (1 - 1e-9)).all()


@pytest.mark.slow
def test_second_demo_configuration_runs_end_to_end(tmp_path):
    cfg = small_config()
    cfg["ifu"] = yaml.safe_load((ROOT / "workflow/configs/demo_ifu.yaml").read_text())["ifu"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
           "--cores", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * 3600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    ifu_dir = tmp_path / "results/tng/TNG-demo/ifu"
    with h5py.File(ifu_dir / "dataset/test.h5") as h5, \
            h5py.File(tmp_path / "results/tng/TNG-demo/dataset/test.h5") as ideal:
        # the same lineage split: the same galaxies and views, the same ex-situ target
        np.testing.assert_array_equal(h5["subhalo_id"][:], ideal["subhalo_id"][:])
        np.testing.assert_array_equal(h5["exsitu_fraction_map"][:], ideal["exsitu_fraction_map"][:])
        np.testing.assert_array_equal(h5["ideal_conditions"][:], ideal["conditions"][:])
        mask = h5["galaxy_mask"][:].astype(bool)
        assert mask.any() and not (mask & ~ideal["galaxy_mask"][:].astype(bool)).any()
        assert list(h5["conditions"].attrs["weighting"]) == list(ifu.IFU_WEIGHTING)
        assert (h5["voronoi_bin"][:][mask] >= 0).all()
    metrics = json.loads((ifu_dir / "comparison/z3_beta7e-05/metrics.json").read_text())
    assert set(metrics["cases"]) == {"ideal_on_ideal", "ifu_on_ifu", "ideal_on_ifu"}
    # the IFU evaluations draw ifu.evaluation_n_draws (default 40), the ideal one its own
    assert metrics["cases"]["ideal_on_ideal"]["n_draws"] == cfg["exsitu_model"]["evaluation"][
        "n_draws"]
    assert metrics["cases"]["ifu_on_ifu"]["n_draws"] == 40
    assert metrics["cases"]["ideal_on_ifu"]["n_draws"] == 40
    for case in metrics["cases"].values():
        flow = case["modes"]["flow"]
        assert 0 <= flow["mean_abs_residual"] <= 1
        assert len(flow["coverage"]) == len(case["credible_levels"])
        assert sum(p["n_pixels"] for p in flow["residual_vs_radius"]) <= metrics["n_pixels"]
    assert (ifu_dir / "comparison/z3_beta7e-05/comparison.png").stat().st_size > 0
    # the comparison and the example maps are in the Snakemake report
    report = tmp_path / "report.html"
    proc = subprocess.run([*cmd[:-2], "--report", str(report)], capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    html = report.read_text(errors="ignore")
    assert "Ex-situ IFU-like" in html
    assert "comparison.png" in html and "example_ifu_maps.png" in html
    # the IFU splits hold the ideal splits' galaxies (the same lineage split), checked for leakage
    ideal_check = json.loads(
        (tmp_path / "results/tng/TNG-demo/dataset/leakage_check.json").read_text())
    check = json.loads((ifu_dir / "dataset/leakage_check.json").read_text())
    assert check["status"] == "passed"
    assert check["galaxies_per_split"] == ideal_check["galaxies_per_split"]
    assert check["samples_per_split"] == ideal_check["samples_per_split"]

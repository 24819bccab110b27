"""HOD occupation and fit, power spectra of fields with known spectra (interlacing against
shot noise, Pylians when installed), the precision-recall curve, the 3D networks and a tiny
training run of each phase."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simbridge.models.dm2gal.evaluate import (
    choose_threshold,
    classification_metrics,
    precision_recall_curve,
    rounded_to_total,
)
from simbridge.models.dm2gal.hod import (
    fit_hod,
    hod_galaxies,
    match_galaxies_to_halos,
    occupation_mean,
)
from simbridge.models.dm2gal.networks import Inception3D, R2UNet3D
from simbridge.models.dm2gal.power import catalog_power_spectrum, cross_correlation, power_spectrum

torch.set_num_threads(1)


def test_the_hod_occupation_function():
    m = np.logspace(10, 15, 200)
    ours = occupation_mean(m, 1e12, 5e12, 0.9)
    for mi, oi in zip(m, ours, strict=True):
        assert oi == (pytest.approx((mi / 5e12) ** 0.9) if mi >= 1e12 else 0.0)


def test_the_hod_fit_recovers_the_parameters_it_was_drawn_from():
    rng = np.random.default_rng(0)
    mass = 10 ** rng.uniform(11, 14.5, 20000)
    truth = {"m_min_msun_h": 3e11, "m_1_msun_h": 1e12, "alpha": 0.8}
    counts = rng.poisson(occupation_mean(mass, *truth.values()))
    fit = fit_hod(mass, counts, n_grid=80)
    assert fit["alpha"] == pytest.approx(0.8, abs=0.03)
    assert np.log10(fit["m_1_msun_h"]) == pytest.approx(12.0, abs=0.05)
    assert np.log10(fit["m_min_msun_h"]) == pytest.approx(np.log10(3e11), abs=0.1)


def test_galaxies_are_matched_to_the_nearest_halo_that_contains_them():
    rng = np.random.default_rng(1)
    box = 20.0
    halos = rng.uniform(0, box, (30, 3))
    radius = rng.uniform(0.3, 1.5, 30)
    gals = np.mod(halos[rng.integers(0, 30, 200)] + rng.normal(0, 0.6, (200, 3)), box)
    counts, outside = match_galaxies_to_halos(halos, radius, gals, box)
    ref = np.zeros(30, int)
    miss = 0
    for g in gals:
        d = np.linalg.norm((halos - g + box / 2) % box - box / 2, axis=1)
        inside = np.flatnonzero(d <= radius)
        if len(inside):
            ref[inside[np.argmin(d[inside])]] += 1
        else:
            miss += 1
    assert np.array_equal(counts, ref) and outside == miss
    hod = {"m_min_msun_h": 1e12, "m_1_msun_h": 1e12, "alpha": 1.0}
    pos = hod_galaxies(halos, np.full(30, 4e12), radius, hod, rng, box)
    c, out = match_galaxies_to_halos(halos, radius * 1.0001, pos, box)
    assert out == 0 and c.sum() == len(pos)  # HOD galaxies stay within R_200c


def test_the_power_spectrum_of_a_plane_wave():
    n, box, m, amp = 32, 25.0, 3, 0.2
    x = np.arange(n) * box / n
    field = 1.0 + amp * np.cos(2 * np.pi * m * x / box)[:, None, None] * np.ones((1, n, n))
    pk = power_spectrum(field, box)
    kf = 2 * np.pi / box
    total = np.sum(pk["pk"] * pk["n_modes"])
    assert total == pytest.approx(box**3 * amp**2 / 2, rel=1e-10)  # V A^2/4 at +-k0
    peak = np.argmax(pk["pk"])
    assert abs(pk["k"][peak] - m * kf) < 0.5 * kf
    r = cross_correlation(field, field, box)["r"]
    assert r[peak] == pytest.approx(1.0)


def test_interlacing_removes_aliasing_from_a_poisson_catalogue():
    rng = np.random.default_rng(3)
    box, n = 25.0, 32
    pos = rng.uniform(0, box, (200000, 3))
    k_nyq = np.pi * n / box
    errors = {}
    for interlace in (True, False):
        pk = catalog_power_spectrum(pos, box, n, "CIC", interlace)
        sel = (pk["k"] > 0.5 * k_nyq) & (pk["k"] < 0.95 * k_nyq)
        errors[interlace] = np.mean(pk["pk"][sel] / pk["shot_noise"][sel]) - 1.0
    # Poisson points: P(k) is the shot noise V/N at every k
    assert abs(errors[True]) < 0.03
    assert abs(errors[False]) > 3 * abs(errors[True])


def test_the_power_spectrum_equals_pylians():
    pkl = pytest.importorskip(
        "Pk_library", reason="Pylians is not installed (pip install pylians==0.12, a ~4 min "
        "source build); the analytic plane-wave and shot-noise tests always run")
    rng = np.random.default_rng(9)
    n, box = 32, 25.0
    field = np.exp(rng.standard_normal((n, n, n)) * 0.3).astype(np.float32)
    delta = (field / field.mean() - 1.0).astype(np.float32)
    theirs = pkl.Pk(delta, box, axis=0, MAS="None", threads=1, verbose=False)
    # every mode (to sqrt(3) k_Nyquist); Pylians bins [i, i+1) k_F over half the modes, ours
    # [i - 1/2, i + 1/2) k_F over all of them: compare the mode-averaged power
    ours = power_spectrum(field.astype(np.float64), box, n_bins=int(np.sqrt(3) * n / 2) + 2)
    mean_theirs = np.sum(theirs.Pk[:, 0] * theirs.Nmodes3D) / np.sum(theirs.Nmodes3D)
    mean_ours = np.sum(ours["pk"] * ours["n_modes"]) / np.sum(ours["n_modes"])
    assert mean_ours == pytest.approx(mean_theirs, rel=1e-3)
    assert np.sum(ours["n_modes"]) == n**3 - 1


def test_the_precision_recall_curve_equals_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    t = rng.random(1000) < 0.05
    s = np.round(rng.random(1000) + 0.6 * t, 3)
    p1, r1, _ = sk.precision_recall_curve(t, s)
    p2, r2 = precision_recall_curve(t, s)
    assert np.allclose(p1, p2) and np.allclose(r1, r2)


def test_the_threshold_reaches_the_accuracy_goal_and_metrics_count_voxels():
    rng = np.random.default_rng(4)
    truth = (rng.random((8, 8, 8)) < 0.05).astype(float)
    prob = np.clip(0.7 * truth + 0.4 * rng.random(truth.shape), 0, 1)
    th, _ = choose_threshold([truth], [prob], 0.97)
    m = classification_metrics(truth, prob >= th)
    assert m["accuracy"] >= 0.97
    flags = prob >= th
    tp = np.sum(flags & (truth > 0))
    assert m["recall"] == pytest.approx(tp / truth.sum())
    assert m["precision"] == pytest.approx(tp / flags.sum())


@pytest.mark.parametrize("net", [R2UNet3D([4, 8], 1), Inception3D([3, 3])])
def test_the_networks_keep_the_shape_and_see_the_symmetries_only_through_data(net):
    x = torch.randn(2, 1, 12, 12, 12)
    assert net(x).shape == (2, 12, 12, 12)


def test_a_tiny_training_run_of_both_phases_resumes_and_predicts(tmp_path):
    from simbridge.extract.voxels import paint, write_run_grids
    from simbridge.models.dm2gal.train import load_network, predict_grid, train_phase

    rng = np.random.default_rng(0)
    box, n = 25.0, 16
    files = []
    for i in range(3):
        halos = rng.uniform(0, box, (20, 3))
        dm = np.concatenate([np.mod(h + 0.3 * rng.standard_normal((60, 3)), box)
                             for h in halos] + [rng.uniform(0, box, (3000, 3))])
        density = paint(dm, box, n)
        grids = {"box_mpc_h": box, "dm_density": density / density.mean(),
                 "galaxy_count": paint(halos, box, n, mas="NGP"), "halo_pos": halos,
                 "halo_m200c": np.full(20, 1e12), "halo_r200c": np.full(20, 0.3),
                 "halo_mass_fof": np.full(20, 1e12), "galaxy_pos": halos,
                 "galaxy_mstar": np.full(20, 1e10), "omega_m": 0.3, "run": f"LH_{i}"}
        files.append(str(tmp_path / f"LH_{i}.h5"))
        write_run_grids(files[-1], grids, {}, 0, [])
    splits = {"train": ["LH_0"], "validation": ["LH_1"], "test": ["LH_2"]}
    settings = {"subbox_size": 8, "padding": 4, "model": {
        "channels": [4, 8], "recurrence_steps": 1, "inception_channels": [3],
        "positive_weight": 10.0, "regressor_candidate_fraction": 0.05, "epochs": 2,
        "batch_size": 4, "learning_rate": 2e-3, "patience": 3, "device": "cpu"}}
    for phase, arch in (("classifier", "inception"), ("regressor", "r2unet")):
        out = tmp_path / f"{phase}.pt"
        ck = tmp_path / f"ck_{phase}"
        one = dict(settings, model=dict(settings["model"], epochs=1))
        train_phase(phase, arch, files, splits, one, 1, str(out), str(tmp_path / "h.csv"),
                    str(ck))
        payload = train_phase(phase, arch, files, splits, settings, 1, str(out),
                              str(tmp_path / "h.csv"), str(ck))
        assert payload["best_epoch"] in (0, 1)
        model, loaded = load_network(str(out))
        pred = predict_grid(model, loaded, np.ones((n, n, n)) * 2.0)
        assert pred.shape == (n, n, n) and np.isfinite(pred).all()


def test_calibrated_counts_reach_the_total_and_follow_the_expected_counts():
    rng = np.random.default_rng(3)
    expected = rng.exponential(0.2, (6, 6, 6)) * (rng.uniform(size=(6, 6, 6)) < 0.3)
    for total in (1.0, 17.0, 60.0):
        counts = rounded_to_total(expected, total)
        assert counts.sum() >= total and np.all(counts == np.floor(counts))
        # brute force: a smaller scale (0.1% less) gives fewer than the total
        c = np.max((counts - 0.5) / np.where(expected > 0, expected, np.inf))
        assert np.floor(0.999 * c * expected + 0.5).sum() < total
        # monotone: a voxel with a larger expected count never gets fewer galaxies
        order = np.argsort(expected.ravel())
        assert np.all(np.diff(counts.ravel()[order]) >= 0)
    assert rounded_to_total(expected, 0.0).sum() == 0

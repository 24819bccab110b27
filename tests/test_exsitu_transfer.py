"""The ex-situ map model on other universes (simbridge.models.exsitu_transfer): map features
against a brute-force loop, set errors, mixtures, importance-weighted distances, a known
error-distance relation recovered leave-one-universe-out, expected errors and bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError  # noqa: E402
from simbridge.models import exsitu_transfer as xt  # noqa: E402
from simbridge.sims.tng_demo import generate_demo_universe  # noqa: E402
from tests.conftest import small_config  # noqa: E402

CFG = {"mixing_fractions": [0.25, 0.5, 0.75], "feature_pool": 2, "n_draws": 4,
       "random_forest": {"n_estimators": 60, "min_samples_leaf": 2, "max_features": 1.0},
       "max_points_per_set": 400, "distance": "weighted_optimal_transport",
       "n_bootstrap": 400, "level": 0.9}


def identity_model() -> SimpleNamespace:
    """A stand-in for a trained model whose condition normalizer is the identity."""
    return SimpleNamespace(cvae=SimpleNamespace(condition=lambda cond, mask: cond))


def test_map_features_match_a_brute_force_loop():
    rng = np.random.default_rng(0)
    b, n, pool = 3, 8, 2
    cond = rng.normal(size=(b, 5, n, n)).astype(np.float32)
    mask = (rng.uniform(size=(b, 1, n, n)) < 0.7).astype(np.float32)
    got = xt.map_features(identity_model(), torch.from_numpy(cond), torch.from_numpy(mask),
                          pool).numpy()
    k = n // pool
    for i in range(b):
        expect = []
        for c in range(5):
            for by in range(pool):
                for bx in range(pool):
                    total = 0.0
                    for y in range(by * k, (by + 1) * k):
                        for x in range(bx * k, (bx + 1) * k):
                            total += cond[i, c, y, x] * mask[i, 0, y, x]
                    expect.append(total / k**2)
        for by in range(pool):
            for bx in range(pool):
                expect.append(mask[i, 0, by * k:(by + 1) * k, bx * k:(bx + 1) * k].mean())
        for c in range(5):
            diffs = []
            for y in range(n):
                for x in range(n):
                    for dy, dx in ((0, 1), (1, 0)):
                        yy, xx = y + dy, x + dx
                        if yy < n and xx < n and mask[i, 0, y, x] and mask[i, 0, yy, xx]:
                            diffs.append(abs(cond[i, c, y, x] - cond[i, c, yy, xx]))
            expect.append(np.mean(diffs))
        np.testing.assert_allclose(got[i], expect, rtol=1e-5, atol=1e-6)


def test_feature_pool_must_divide_the_map_size():
    cond, mask = torch.zeros(1, 5, 10, 10), torch.ones(1, 1, 10, 10)
    with pytest.raises(SimBridgeInputError, match="feature_pool 3 does not divide"):
        xt.map_features(identity_model(), cond, mask, 3)


def test_set_error_is_the_pixel_weighted_mean_absolute_residual():
    rng = np.random.default_rng(1)
    residual = [rng.uniform(0, 1, size=int(k)) for k in rng.integers(1, 50, 20)]
    applied = {"abs_residual_sum": np.array([r.sum() for r in residual]),
               "n_galaxy_pixels": np.array([len(r) for r in residual], dtype=float)}
    idx = np.array([0, 3, 4, 11])
    assert xt.set_error(applied, idx) == pytest.approx(
        np.concatenate([residual[i] for i in idx]).mean())
    assert xt.set_error(applied) == pytest.approx(np.concatenate(residual).mean())


def test_mixtures_hold_the_configured_fractions_without_repeats_and_are_seeded():
    sizes = {xt.IN_DOMAIN: 40, "a": 60, "b": 25}
    sets = xt.transfer_sets(sizes, [0.25, 0.5], seed=7)
    assert [s["name"] for s in sets] == [xt.IN_DOMAIN, "a_f0.25", "a_f0.5", "a_f1",
                                         "b_f0.25", "b_f0.5", "b_f1"]
    for s in sets:
        for src, idx in s["indices"].items():
            assert len(np.unique(idx)) == len(idx) and idx.max() < sizes[src]
        if 0 < s["fraction"] < 1:
            size = min(40, sizes[s["universe"]])
            assert len(s["indices"][s["universe"]]) == round(s["fraction"] * size)
            assert sum(len(i) for i in s["indices"].values()) == size
    assert len(sets[3]["indices"]["a"]) == 60 and list(sets[3]["indices"]) == ["a"]
    again = xt.transfer_sets(sizes, [0.25, 0.5], seed=7)
    other = xt.transfer_sets(sizes, [0.25, 0.5], seed=8)
    assert all(np.array_equal(x["indices"]["a"], y["indices"]["a"])
               for x, y in zip(sets[1:3], again[1:3], strict=True))
    assert not np.array_equal(sets[1]["indices"]["a"], other[1]["indices"]["a"])
    with pytest.raises(SimBridgeInputError, match="transfer universe 'c' gave 1"):
        xt.transfer_sets({**sizes, "c": 1}, [0.5], 7)


def _train(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Training features where only feature 0 predicts the target."""
    x = rng.normal(size=(n, 4))
    return {"features": x, "mean_exsitu_fraction": 1 / (1 + np.exp(-2 * x[:, 0]))}


def test_weighted_distance_weighs_a_shift_of_the_important_feature():
    rng = np.random.default_rng(2)
    space = xt.FeatureSpace(_train(400, rng), CFG, seed=3)
    assert space.importance[0] > 0.5
    base = rng.normal(size=(300, 4))
    shift0, shift1 = base.copy(), base.copy()
    shift0[:, 0] += 1.5
    shift1[:, 1] += 1.5
    d0, d1 = space.distances(shift0, "x0"), space.distances(shift1, "x1")
    same = space.distances(base, "same")
    assert d0["weighted_optimal_transport"] > 2 * d1["weighted_optimal_transport"]
    # unweighted optimal transport sees both shifts alike; W1 lies between the distance of
    # the (standardized) means (Jensen) and W1 of the unshifted set + the shift (triangle)
    assert d0["optimal_transport"] == pytest.approx(d1["optimal_transport"], rel=0.2)
    z = space.standardize(shift0)
    mean_gap = np.linalg.norm(z.mean(0) - space.reference.mean(0))
    assert mean_gap <= d0["optimal_transport"] <= same["optimal_transport"] + 1.5 / space.scale[0]
    assert mean_gap > 1.2


def _known_relation_study(a: float, b: float, seed: int = 4) -> tuple[dict, dict, dict]:
    """Universes shifted along the important feature by s; every sample of a universe has a
    residual of a + b s per pixel, so error = a + b * (transported distance) by construction
    (a mixture moves the fraction f of its mass by s, and its error is the f-weighted mean)."""
    rng = np.random.default_rng(seed)
    train = _train(600, rng)
    sd = train["features"].std(0)
    applied = {}
    for name, s in ((xt.IN_DOMAIN, 0.0), ("u1", 0.5), ("u2", 1.0), ("u3", 1.5), ("u4", 2.0)):
        x = rng.normal(size=(300, 4))
        x[:, 0] += s * sd[0]
        pixels = rng.integers(20, 60, 300).astype(float)
        applied[name] = {"features": x, "n_galaxy_pixels": pixels,
                         "abs_residual_sum": (a + b * s) * pixels}
    return applied, train, xt.transfer_study(applied, train, CFG, seed, "toy")


def test_leave_one_universe_out_recovers_a_known_error_distance_relation():
    applied, _, m = _known_relation_study(a=0.05, b=0.04)
    fit = m["fits"]["weighted_optimal_transport"]
    weights = np.array(m["feature_importance"])
    # the weighted distance of a shift s (in sigma units) along feature 0 is sqrt(w0 n) s
    slope = 0.04 / np.sqrt(weights[0] * len(weights))
    assert fit["slope"] == pytest.approx(slope, rel=0.25)
    assert fit["r2"] > 0.9 and m["checks"]["error_grows_with_distance"]
    loo = m["leave_one_universe_out"]["weighted_optimal_transport"]
    assert [x["universe"] for x in loo["universes"]] == ["u1", "u2", "u3", "u4"]
    for x in loo["universes"]:
        assert x["lower"] <= x["predicted"] <= x["upper"]
        assert x["relative_error_of_prediction"] < 0.25, x
    assert m["in_domain_error"] == pytest.approx(0.05)


def test_expected_error_of_a_new_set_follows_the_fit():
    applied, train, m = _known_relation_study(a=0.05, b=0.04)
    m["settings"], m["seed"] = CFG, 4
    sd = train["features"].std(0)
    x = np.random.default_rng(9).normal(size=(300, 4))
    x[:, 0] += 1.25 * sd[0]
    out = xt.expected_error(m, train, x, "new")
    assert out["expected_mean_abs_residual_per_pixel"] == pytest.approx(0.05 + 0.04 * 1.25,
                                                                        rel=0.15)
    lo, hi = out["interval"]
    assert lo < out["expected_mean_abs_residual_per_pixel"] < hi
    assert not out["extrapolated"]
    far = x.copy()
    far[:, 0] += 3 * sd[0]
    assert xt.expected_error(m, train, far, "far")["extrapolated"]


def test_transfer_universe_takes_the_tng_demo_universe_and_its_overrides():
    demo = small_config()["demo_universe"]
    p = xt.transfer_universe_params(demo, {"demo": {"star_particle_mass_msun": 4e7}}, 99)
    assert p["star_particle_mass_msun"] == 4e7 and p["merger_trees"] is False
    assert p["snapshots"] == [{"snapshot": 99, "redshift": 0.0}]
    assert p["n_galaxies"] == demo["n_galaxies"]
    with pytest.raises(SimBridgeConfigError, match="snapshot 50 is not a snapshot"):
        xt.transfer_universe_params(demo, {}, 50)


def test_a_universe_without_a_galaxy_above_the_cut_is_a_clear_error(tmp_path):
    cfg = small_config()
    generate_demo_universe(tmp_path / "sim", {"n_galaxies": 4, "log10_stellar_mass_range":
                                              [9.5, 9.7], "merger_trees": False,
                                              "snapshots": [{"snapshot": 99, "redshift": 0.0}]},
                           seed=1)
    with pytest.raises(SimBridgeInputError, match="stellar mass above") as err:
        xt.extract_universe_maps(tmp_path / "sim/output", 99, cfg, 2, tmp_path / "c.csv",
                                 tmp_path / "m.h5", tmp_path / "m.csv", "tiny", progress=False)
    assert "stellar_mass_min_msun" in str(err.value)
    assert not (tmp_path / "m.h5").exists()

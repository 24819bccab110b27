"""Halo superpositions: sparse sums against a brute-force loop, ordering, seeds, disjointness."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from simbridge.dataset.superpose import (
    SPLITS,
    assign_galaxy_splits,
    build_superposition_files,
    check_disjointness,
    combination,
    draw_sets,
    membership_matrix,
    ordered_parameters,
    superpose_loop,
    superpose_to_file,
)
from simbridge.errors import SimBridgeInputError


def _fake_blocks(tmp_path, n_galaxies: int = 8, per_galaxy: int = 5, n_bins: int = 8):
    """A building-block file as the extraction stage writes it (random sparse histograms)."""
    rng = np.random.default_rng(1)
    n = n_galaxies * per_galaxy
    hists = rng.poisson(0.3, (n, n_bins, n_bins)).astype(np.float32)
    stars_per = rng.integers(5, 20, n)
    off = np.concatenate([[0], np.cumsum(stars_per)])
    path = tmp_path / "blocks.h5"
    with h5py.File(path, "w") as h5:
        h5["histograms"] = hists
        h5["histograms"].attrs.update(weighting="counts", units="star particles")
        h5["feh_edges"] = np.linspace(-3, 0, n_bins + 1)
        h5["ofe_edges"] = np.linspace(-0.3, 0.6, n_bins + 1)
        h5["stellar_mass_msun"] = 10 ** rng.uniform(6, 9, n)
        h5["dm_mass_msun"] = 10 ** rng.uniform(9, 11, n)
        h5["infall_time_gyr"] = rng.uniform(2, 13, n)
        h5["galaxy"] = np.repeat([f"g{i + 1}.00e10" for i in range(n_galaxies)],
                                 per_galaxy).astype("S")
        h5["snapshot"] = np.array([f"s{i}" for i in range(n)]).astype("S")
        h5["star_offset"] = off
        h5["stars/feh"] = rng.uniform(-3, 0, off[-1])
        h5["stars/ofe"] = rng.uniform(-0.3, 0.6, off[-1])
        h5["stars/mass_msun"] = np.ones(off[-1])
    return path, hists


def _config(rule: str = "galaxies", noise: float = 0.0) -> dict:
    return {"seed": 5, "abundances": {"superposition": {
        "n_sub_range": [2, 5], "sets_per_n_sub": {"train": 30, "validation": 6, "test": 6},
        "disjointness": rule,
        "galaxy_split_fractions": {"train": 0.6, "validation": 0.2, "test": 0.2},
        "noise_dex": {"feh": noise, "ofe": noise}, "n_noise_realizations": 3,
        "chunk_samples": 7}}}


def test_sparse_superposition_equals_a_brute_force_loop(tmp_path):
    rng = np.random.default_rng(0)
    templates = rng.poisson(0.5, (40, 16, 16)).astype(np.float32)
    sets = [np.sort(rng.choice(40, size=rng.integers(2, 12), replace=False)) for _ in range(101)]
    membership = membership_matrix(sets, sets, 40)
    path = tmp_path / "x.h5"
    superpose_to_file(templates, membership, path, chunk_samples=13)  # chunks do not divide 101
    with h5py.File(path) as h5:
        x = h5["x"][...]
    ref = np.zeros_like(x)
    for i, members in enumerate(sets):
        for m in members:
            ref[i] += templates[m]
    np.testing.assert_array_equal(x, ref)
    np.testing.assert_array_equal(superpose_loop(templates, sets), ref)


def test_parameters_are_ordered_by_decreasing_stellar_mass():
    params = np.array([[1e7, 1e10, 3.0], [1e9, 1e11, 5.0], [1e8, 2e10, 9.0]])
    theta, members = ordered_parameters(params, [np.array([0, 1, 2]), np.array([0, 2])], 4)
    np.testing.assert_array_equal(members, [[1, 2, 0, -1], [2, 0, -1, -1]])
    np.testing.assert_array_equal(theta[0, :3, 0], [1e9, 1e8, 1e7])
    assert np.isnan(theta[1, 2:]).all()


def test_split_files_are_seeded_disjoint_and_pass_the_check(tmp_path):
    blocks, hists = _fake_blocks(tmp_path)
    out = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    build_superposition_files(blocks, _config(), out)
    record = check_disjointness(out, "galaxies")
    assert record["status"] == "passed"
    galaxies = {}
    for split in SPLITS:
        with h5py.File(out[split]) as h5:
            n_sub, members, x = h5["n_sub"][...], h5["members"][...], h5["x"][...]
            gal = h5["block_galaxy"][...].astype(str)
            assert h5["theta"].attrs["units"].tolist() == ["Msun", "Msun", "Gyr"]
            assert sorted(set(n_sub)) == [2, 3, 4, 5]
            for i in range(len(n_sub)):
                row = members[i, : n_sub[i]]
                assert len(set(row)) == n_sub[i]  # distinct blocks
                np.testing.assert_array_equal(x[i], hists[row].sum(axis=0))
            galaxies[split] = {g for row in members for g in gal[row[row >= 0]]}
    assert not galaxies["train"] & galaxies["test"]
    assert not galaxies["train"] & galaxies["validation"]
    again = {s: tmp_path / f"again_{s}.h5" for s in SPLITS}
    build_superposition_files(blocks, _config(), again)
    with h5py.File(out["test"]) as a, h5py.File(again["test"]) as b:
        np.testing.assert_array_equal(a["members"][...], b["members"][...])


def test_the_check_fails_when_a_test_galaxy_is_in_training(tmp_path):
    blocks, _ = _fake_blocks(tmp_path)
    out = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    build_superposition_files(blocks, _config(), out)
    with h5py.File(out["train"]) as h5:
        train_block = int(h5["members"][0, 0])
    with h5py.File(out["test"], "a") as h5:
        members = h5["members"][...]
        members[0, 0] = train_block  # a training galaxy's block leaks into a test halo
        h5["members"][...] = members
    with pytest.raises(SimBridgeInputError, match="galaxies in both train and test"):
        check_disjointness(out, "galaxies")


def test_combinations_rule_redraws_collisions_and_its_check_catches_one(tmp_path):
    blocks, _ = _fake_blocks(tmp_path)
    out = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    build_superposition_files(blocks, _config("combinations"), out)
    assert check_disjointness(out, "combinations")["status"] == "passed"
    with h5py.File(out["train"]) as h5:
        train_row = h5["members"][0]
    with h5py.File(out["test"], "a") as h5:
        members = h5["members"][...]
        members[0] = train_row  # the same combination of galaxy names as a training halo
        h5["members"][...] = members
    with pytest.raises(SimBridgeInputError, match="test combinations seen in training"):
        check_disjointness(out, "combinations")
    with pytest.raises(SimBridgeInputError, match="built with the 'combinations' rule"):
        check_disjointness(out, "galaxies")
    # draw_sets refuses combinations it was told to avoid
    galaxy = np.array(["a", "a", "b", "b"])
    forbidden = {("a", "b")}
    sets = draw_sets(galaxy, np.arange(4), [2, 2], 20, seed=1, label="test", forbidden=forbidden)
    assert all(combination(galaxy, s) != ("a", "b") for s in sets)


def test_too_few_blocks_or_galaxies_are_clear_errors():
    with pytest.raises(SimBridgeInputError, match="fewer than N_sub"):
        draw_sets(np.array(["a"] * 3), np.arange(3), [2, 5], 1, seed=0, label="test")
    with pytest.raises(SimBridgeInputError, match="at least 3"):
        assign_galaxy_splits(["a", "b"], {"train": 0.6, "validation": 0.2, "test": 0.2}, 0)


def test_noise_realizations_rebin_the_stars(tmp_path):
    blocks, hists = _fake_blocks(tmp_path)
    out = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    build_superposition_files(blocks, _config(noise=0.05), out)
    with h5py.File(out["train"]) as h5, h5py.File(blocks) as b:
        x, n_sub, members = h5["x"][...], h5["n_sub"][...], h5["members"][...]
        off = b["star_offset"][...]
    n_stars = np.diff(off)
    for i in range(5):
        row = members[i, : n_sub[i]]
        assert x[i].sum() <= n_stars[row].sum()  # stars pushed out of the range are lost
        assert not np.array_equal(x[i], hists[row].sum(axis=0))

"""Voxel grids (CIC and NGP against a brute-force loop and Pylians), mass conservation,
periodic sub-boxes, the 48 cube symmetries and the run-level split check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simbridge.dataset.subboxes import (
    CUBE_SYMMETRIES,
    apply_symmetry,
    assign_run_splits,
    check_run_splits,
    periodic_subbox,
    tile_corners,
)
from simbridge.errors import SimBridgeInputError
from simbridge.extract.voxels import paint, paint_numpy, readout_cic


def _brute_force(pos, box, n, weights, mas):
    grid = np.zeros((n, n, n))
    dx = box / n
    for p, w in zip(pos, weights, strict=True):
        x = (p % box) / dx
        if mas == "NGP":
            i = [int(c + 0.5) % n for c in x]
            grid[i[0], i[1], i[2]] += w
            continue
        i0 = [int(np.floor(c)) for c in x]
        u = [c - f for c, f in zip(x, i0, strict=True)]
        for corner in itertools.product((0, 1), repeat=3):
            wt = w
            for d in range(3):
                wt *= u[d] if corner[d] else 1 - u[d]
            grid[(i0[0] + corner[0]) % n, (i0[1] + corner[1]) % n, (i0[2] + corner[2]) % n] += wt
    return grid


@pytest.mark.parametrize("painter", [paint, paint_numpy])
@pytest.mark.parametrize("mas", ["CIC", "NGP"])
def test_mass_assignment_matches_a_brute_force_loop_and_conserves_mass(mas, painter):
    rng = np.random.default_rng(5)
    box, n = 25.0, 8
    pos = rng.uniform(-1.0, box + 1.0, (300, 3))  # outside the box too: periodic wrap
    pos[:3] = [[0.0, 0.0, 0.0], [box - 1e-9, 12.5, 3.0], [24.99, 24.99, 24.99]]
    w = rng.uniform(0.5, 2.0, len(pos))
    ours = painter(pos, box, n, w, mas)
    assert np.allclose(ours, _brute_force(pos, box, n, w, mas), atol=1e-10)
    assert ours.sum() == pytest.approx(w.sum(), rel=1e-12)


def test_cic_readout_is_the_transpose_of_cic_painting():
    rng = np.random.default_rng(2)
    box, n = 10.0, 6
    pos = rng.uniform(0, box, (40, 3))
    field = rng.standard_normal((n, n, n))
    w = rng.standard_normal(len(pos))
    # <paint(w), field> = <w, readout(field)>
    assert np.sum(paint(pos, box, n, w) * field) == pytest.approx(
        np.sum(w * readout_cic(field, pos, box)), rel=1e-10)


@pytest.mark.parametrize("mas", ["CIC", "NGP"])
def test_mass_assignment_equals_pylians(mas):
    masl = pytest.importorskip(
        "MAS_library", reason="Pylians is not installed (pip install pylians==0.12, a ~4 min "
        "source build); the brute-force comparison above always runs")
    rng = np.random.default_rng(8)
    box, n = 25.0, 32
    pos = rng.uniform(0, box, (20000, 3)).astype(np.float32)
    theirs = np.zeros((n, n, n), np.float32)
    masl.MA(pos, theirs, box, MAS=mas, verbose=False)
    assert np.allclose(paint(pos, box, n, mas=mas), theirs, atol=5e-5)


def test_periodic_subboxes_wrap_and_tile_the_grid():
    rng = np.random.default_rng(0)
    n, size, pad = 8, 4, 2
    grid = rng.standard_normal((n, n, n))
    padded = np.pad(grid, pad, mode="wrap")
    for corner in tile_corners(n, size):
        block = periodic_subbox(grid, corner, size, pad)
        ref = padded[corner[0]:corner[0] + size + 2 * pad, corner[1]:corner[1] + size + 2 * pad,
                     corner[2]:corner[2] + size + 2 * pad]
        assert np.array_equal(block, ref)
    assert len(tile_corners(n, size)) == (n // size) ** 3
    shifted = tile_corners(n, size, (7, 1, 0))
    assert (7, 1, 0) in shifted and all(0 <= c < n for corner in shifted for c in corner)
    with pytest.raises(SimBridgeInputError, match="subbox_size"):
        tile_corners(10, 4)


def test_the_48_cube_symmetries_are_the_distinct_isometries_of_the_cube():
    rng = np.random.default_rng(1)
    m = 5
    cube = rng.standard_normal((m, m, m))
    images = [apply_symmetry(cube, s) for s in range(len(CUBE_SYMMETRIES))]
    assert len(CUBE_SYMMETRIES) == 48
    assert np.array_equal(images[0], cube)
    assert len({im.tobytes() for im in images}) == 48
    # brute force: voxel (i, j, k) of the image is voxel perm/flip-mapped of the original
    for s, (perm, flips) in enumerate(CUBE_SYMMETRIES):
        for idx in itertools.product(range(m), repeat=3):
            src = [0, 0, 0]
            for out_axis, in_axis in enumerate(perm):
                v = idx[out_axis]
                src[in_axis] = m - 1 - v if flips[out_axis] else v
            assert images[s][idx] == cube[tuple(src)]
    # a group: the composition of two symmetries is a symmetry; leading axes untouched
    composed = apply_symmetry(apply_symmetry(cube, 13), 41)
    assert any(np.array_equal(composed, im) for im in images)
    stack = np.stack([cube, 2 * cube])
    assert np.array_equal(apply_symmetry(stack, 7)[1], 2 * apply_symmetry(cube, 7))


RANGES = {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0), "A_SN1": (0.25, 4.0)}


def test_run_splits_keep_every_run_in_one_split_and_the_check_catches_leaks():
    rng = np.random.default_rng(4)
    params = {f"LH_{i}": {"Omega_m": rng.uniform(0.1, 0.5), "sigma_8": rng.uniform(0.6, 1.0),
                          "A_SN1": float(np.exp(rng.uniform(np.log(0.25), np.log(4))))}
              for i in range(9)}
    splits = assign_run_splits(params, RANGES, 2, 2)
    runs = splits["train"] + splits["validation"] + splits["test"]
    assert sorted(runs) == sorted(params) and len(set(runs)) == len(runs)
    assert len(splits["test"]) == 2 and len(splits["validation"]) == 2
    far = max(params, key=lambda r: splits["distance_from_centre"][r])
    assert splits["cross_prediction"] == [far] and far in splits["test"]
    files = {f"{r}.h5": r for r in params}
    assert check_run_splits(splits, files)["passed"]
    leaky = {**splits, "validation": splits["validation"] + [splits["train"][0]]}
    with pytest.raises(SimBridgeInputError, match="both the train and the validation"):
        check_run_splits(leaky, files)
    with pytest.raises(SimBridgeInputError, match="in no split"):
        check_run_splits(splits, {**files, "LH_99.h5": "LH_99"})
    with pytest.raises(SimBridgeInputError, match="cannot fill"):
        assign_run_splits(dict(list(params.items())[:3]), RANGES, 1, 2)


@pytest.mark.parametrize("mas", ["CIC", "NGP"])
def test_float32_positions_float32_grids_and_threads_give_the_same_sums(mas):
    rng = np.random.default_rng(11)
    box, n = 25.0, 16
    pos = rng.uniform(-2.0, box + 2.0, (5000, 3))
    w = rng.uniform(0.5, 2.0, len(pos))
    ref = paint_numpy(pos.astype(np.float32), box, n, w, mas)  # same float32 coordinates
    assert np.allclose(paint(pos.astype(np.float32), box, n, w, mas), ref, atol=1e-9)
    assert np.allclose(paint(pos, box, n, w, mas, threads=2), paint(pos, box, n, w, mas),
                       rtol=0, atol=1e-9)
    grid32 = paint(pos, box, n, w, mas, dtype=np.float32)
    assert grid32.dtype == np.float32
    assert np.allclose(grid32, paint(pos, box, n, w, mas), atol=1e-4)
    bad = pos.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        paint(bad, box, n, w, mas)

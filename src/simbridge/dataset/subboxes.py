"""Samples of the dm2gal branch: periodic sub-boxes of the voxel grids, the 48 symmetries of the
cube for augmentation, and splits by simulation run (never one run in two splits)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from simbridge.errors import SimBridgeInputError

#: the 48 symmetries of the cube: (axis permutation, flip of each output axis)
CUBE_SYMMETRIES: tuple[tuple[tuple[int, int, int], tuple[bool, bool, bool]], ...] = tuple(
    (perm, flips) for perm in itertools.permutations(range(3))
    for flips in itertools.product((False, True), repeat=3))


def apply_symmetry(cube: np.ndarray, index: int) -> np.ndarray:
    """Symmetry ``index`` (0..47) of the last three axes of ``cube`` (0 is the identity)."""
    perm, flips = CUBE_SYMMETRIES[index]
    lead = cube.ndim - 3
    out = np.transpose(cube, tuple(range(lead)) + tuple(lead + p for p in perm))
    axes = tuple(lead + a for a in range(3) if flips[a])
    return np.flip(out, axis=axes) if axes else out


def periodic_subbox(grid: np.ndarray, corner: Sequence[int], size: int, pad: int) -> np.ndarray:
    """The (size + 2 pad)^3 block of a periodic grid whose interior starts at ``corner``
    (indices wrap around, so blocks at the edge see the other side of the box)."""
    n = grid.shape[-1]
    idx = [(c - pad + np.arange(size + 2 * pad)) % n for c in corner]
    return grid[..., idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]]


def tile_corners(n: int, size: int, shift: Sequence[int] = (0, 0, 0)) -> list[tuple[int, ...]]:
    """Corners of the (n / size)^3 sub-boxes that tile an n^3 grid, shifted periodically."""
    if n % size:
        raise SimBridgeInputError(f"the grid side {n} is not a multiple of the sub-box side "
                                  f"{size}", None, "set dm2gal.subbox_size to a divisor of "
                                  "dm2gal.grid")
    starts = range(0, n, size)
    return [tuple((c + s) % n for c, s in zip(corner, shift, strict=True))
            for corner in itertools.product(starts, repeat=3)]


def normalised_parameters(params: Mapping[str, float], ranges: Mapping[str, tuple[float, float]]
                          ) -> np.ndarray:
    """A run's parameters in the unit cube of the hypercube (feedback amplitudes in log)."""
    out = []
    for name, (lo, hi) in ranges.items():
        x = params[name]
        if name.startswith("A_"):
            x, lo, hi = np.log(x), np.log(lo), np.log(hi)
        out.append((x - lo) / (hi - lo))
    return np.asarray(out)


def assign_run_splits(parameters: Mapping[str, Mapping[str, float]],
                      ranges: Mapping[str, tuple[float, float]], n_validation: int,
                      n_test: int) -> dict[str, list[str]]:
    """Whole runs to splits by their place in the hypercube: the test split holds the run
    farthest from the centre (the cross-prediction case, far from what the model saw) and the
    n_test - 1 runs nearest it; validation the next nearest; the rest train."""
    runs = sorted(parameters)
    if len(runs) < n_validation + n_test + 1:
        raise SimBridgeInputError(
            f"{len(runs)} runs cannot fill {n_test} test, {n_validation} validation runs and a "
            "training run", None, "use more runs (camels.demo.n_runs or camels.runs) or fewer "
            "dm2gal.splits.test_runs / validation_runs")
    dist = {r: float(np.linalg.norm(normalised_parameters(parameters[r], ranges) - 0.5))
            for r in runs}
    by_distance = sorted(runs, key=lambda r: (dist[r], r))
    far = by_distance[-1]
    near = by_distance[:n_test - 1]
    rest = [r for r in by_distance if r != far and r not in near]
    test = near + [far]
    validation = rest[:n_validation]
    train = sorted(r for r in rest[n_validation:])
    return {"train": train, "validation": sorted(validation), "test": sorted(test),
            "cross_prediction": [far], "distance_from_centre": dist}


def check_run_splits(splits: Mapping[str, Sequence[str]], sample_runs: Mapping[str, str]
                     ) -> dict[str, object]:
    """Fail unless every run lies in exactly one of train/validation/test and every sample file
    names a run of its split. ``sample_runs``: {file: run attribute}. Returns the record."""
    seen: dict[str, str] = {}
    for split in ("train", "validation", "test"):
        if not splits.get(split):
            raise SimBridgeInputError(f"the {split} split holds no run", None,
                                      "use more runs or fewer validation/test runs")
        for run in splits[split]:
            if run in seen:
                raise SimBridgeInputError(
                    f"run {run} lies in both the {seen[run]} and the {split} split: sub-boxes "
                    "of one simulation would leak between splits", None,
                    "rebuild the split file (snakemake --forcerun dm2gal_splits)")
            seen[run] = split
    for path, run in sample_runs.items():
        if run not in seen:
            raise SimBridgeInputError(f"the voxel file of run {run} is in no split", path,
                                      "rebuild the split file (snakemake --forcerun "
                                      "dm2gal_splits)")
    return {"passed": True, "runs": seen, "n_files": len(sample_runs)}

"""Reading superposition split files into training tensors, and the parameter transforms.

Observables: ``log1p`` of the superposed histogram, divided by ``log1p`` of the training split's
largest pixel (one number, stored with the model). Parameters: log10 stellar mass [Msun],
log10 dark-matter mass [Msun] and infall time [Gyr] of a building block.
Step 2 uses one row per building block of a halo: (halo plane, rank, N_sub) -> block parameters,
with rank 0 the most massive block; rank and N_sub enter the network as two extra inputs
appended to the flattened plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from numpy.typing import NDArray

from simbridge.models.training import derive_seed

#: Names and units of the step-2 parameters (after the transform).
BLOCK_PARAMETERS = ("log10_stellar_mass_msun", "log10_dm_mass_msun", "infall_time_gyr")
BLOCK_PARAMETER_UNITS = ("dex (Msun)", "dex (Msun)", "Gyr")


@dataclass
class Split:
    """One superposition split in memory."""

    x: NDArray            # (N, n, n) float32 superposed histograms
    n_sub: NDArray        # (N,)
    theta: NDArray        # (N, n_max, 3) physical parameters, NaN padding
    n_sub_range: tuple[int, int]


def read_split(path: str | Path, n_sub_range: tuple[int, int]) -> Split:
    """Observables, N_sub and ordered parameters of one split file."""
    with h5py.File(path, "r") as h5:
        return Split(x=h5["x"][...], n_sub=h5["n_sub"][...].astype(np.int64),
                     theta=h5["theta"][...], n_sub_range=(int(n_sub_range[0]),
                                                          int(n_sub_range[1])))


def x_scale(train_x: NDArray) -> float:
    """log1p of the largest training pixel: observables are log1p(x) / scale, in [0, ~1]."""
    return float(np.log1p(max(float(np.max(train_x)), 1.0)))


def transform_x(x: NDArray, scale: float) -> torch.Tensor:
    """(N, n, n) histograms -> float32 tensor log1p(x) / scale."""
    return torch.as_tensor(np.log1p(np.asarray(x, dtype=np.float32)) / scale,
                           dtype=torch.float32)


def transform_theta(theta: NDArray) -> NDArray:
    """(..., 3) physical (Msun, Msun, Gyr) -> (log10 M*, log10 M_dm, t_infall)."""
    out = np.array(theta, dtype=np.float64)
    out[..., :2] = np.log10(out[..., :2])
    return out


def block_rows(split: Split, scale: float, max_rows: int | None, seed: int, label: str
               ) -> tuple[torch.Tensor, torch.Tensor, NDArray, NDArray]:
    """Step-2 rows: x = [flattened plane, rank / (n_max - 1), N_sub / n_max], theta = block.

    Returns (theta (R, 3), x (R, n*n + 2), halo index and rank of each row). With
    ``max_rows``, a seeded subset of rows (memory: every row holds its halo's plane).
    """
    halo = np.concatenate([np.full(k, i) for i, k in enumerate(split.n_sub)])
    rank = np.concatenate([np.arange(k) for k in split.n_sub])
    if max_rows is not None and len(halo) > max_rows:
        keep = np.sort(np.random.default_rng(derive_seed(seed, "rows", label)).choice(
            len(halo), max_rows, replace=False))
        halo, rank = halo[keep], rank[keep]
    theta = transform_theta(split.theta[halo, rank])
    x = block_condition(split.x[halo], rank, split.n_sub[halo], split.n_sub_range[1], scale)
    return torch.as_tensor(theta, dtype=torch.float32), x, halo, rank


def block_condition(x: NDArray, rank: NDArray, n_sub: NDArray, n_max: int, scale: float
                    ) -> torch.Tensor:
    """[flattened log1p plane, rank / (n_max - 1), N_sub / n_max] per row."""
    flat = transform_x(x, scale).reshape(len(x), -1)
    extra = torch.as_tensor(np.stack([np.asarray(rank) / max(n_max - 1, 1),
                                      np.asarray(n_sub) / n_max], axis=1), dtype=torch.float32)
    return torch.cat([flat, extra], dim=1)

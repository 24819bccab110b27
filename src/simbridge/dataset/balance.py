"""Balancing: more lines of sight for galaxies whose global ex-situ fraction is rare.

Galaxies (all snapshots together) are binned by global ex-situ mass fraction with the edges
``balancing.exsitu_fraction_bins``. A bin holding N_b galaxies gets

    views_b = clip(round(min_views * N_max / N_b), min_views, max_views)

lines of sight per galaxy, N_max being the count of the most populated bin. Without the cap
every bin would hold about min_views * N_max samples; the cap keeps a handful of rare galaxies
from being repeated into hundreds of near-identical samples. The directions of a galaxy's views
are well spread and seeded per galaxy (:func:`simbridge.extract.tng_maps.galaxy_rotations`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simbridge.errors import SimBridgeConfigError
from simbridge.io import atomic_output, read_table, write_json_atomic

log = logging.getLogger(__name__)

PLAN_COLUMNS = [
    "snapshot", "subhalo_id", "batch", "status", "reason", "stellar_mass_msun",
    "exsitu_fraction_global", "exsitu_bin", "n_views",
]


def check_bin_edges(edges: Sequence[float]) -> np.ndarray:
    """Bin edges as an array; they must rise strictly from 0 to 1."""
    arr = np.asarray(edges, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2 or arr[0] != 0.0 or arr[-1] != 1.0 or np.any(
            np.diff(arr) <= 0):
        raise SimBridgeConfigError(
            f"balancing.exsitu_fraction_bins = {list(edges)} must rise strictly from 0 to 1 "
            "(e.g. [0.0, 0.1, 0.2, ..., 1.0])")
    return arr


def check_view_range(min_views: int, max_views: int) -> None:
    """Views per galaxy must satisfy 1 <= min_views <= max_views."""
    if not 1 <= min_views <= max_views:
        raise SimBridgeConfigError(
            f"balancing.min_views={min_views} and max_views={max_views}: need "
            "1 <= min_views <= max_views")


def exsitu_bin(fraction: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bin of each fraction; bins are [e_i, e_i+1), the last one closed at 1."""
    idx = np.searchsorted(edges, np.asarray(fraction, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def views_per_bin(counts: np.ndarray, min_views: int, max_views: int) -> np.ndarray:
    """Lines of sight per galaxy in each bin (0 for empty bins)."""
    counts = np.asarray(counts, dtype=np.int64)
    check_view_range(min_views, max_views)
    views = np.zeros(counts.shape, dtype=np.int64)
    filled = counts > 0
    if filled.any():
        ratio = counts.max() / counts[filled]
        views[filled] = np.clip(np.rint(min_views * ratio), min_views, max_views)
    return views


def plan_views(measured: pd.DataFrame, balancing: dict[str, Any]) -> tuple[pd.DataFrame, dict]:
    """The balancing plan: views per measured galaxy (0 for skipped ones) and a summary."""
    edges = check_bin_edges(balancing["exsitu_fraction_bins"])
    plan = measured.copy()
    ok = (plan["status"] == "measured").to_numpy()
    frac = plan["exsitu_fraction_global"].to_numpy(dtype=np.float64)
    bins = np.full(len(plan), -1, dtype=np.int64)
    bins[ok] = exsitu_bin(frac[ok], edges)
    counts = np.bincount(bins[ok], minlength=len(edges) - 1)
    views = views_per_bin(counts, int(balancing["min_views"]), int(balancing["max_views"]))
    plan["exsitu_bin"] = bins
    plan["n_views"] = np.where(ok, views[np.maximum(bins, 0)], 0)
    summary = {
        "bin_edges": edges.tolist(),
        "galaxies_per_bin": counts.tolist(),
        "views_per_galaxy": views.tolist(),
        "samples_per_bin": (counts * views).tolist(),
        "samples_per_bin_unbalanced": (counts * int(balancing["min_views"])).tolist(),
        "n_galaxies": int(ok.sum()),
        "n_samples": int((counts * views).sum()),
        "min_views": int(balancing["min_views"]),
        "max_views": int(balancing["max_views"]),
        "rule": "views_b = clip(round(min_views * max(N) / N_b), min_views, max_views)",
    }
    return plan[PLAN_COLUMNS], summary


def write_view_plan(
    measure_csvs: Sequence[str | Path], balancing: dict[str, Any],
    out_plan: str | Path, out_summary: str | Path,
) -> pd.DataFrame:
    """Combine the per-batch measurements, plan the views and write plan CSV + summary JSON."""
    measured = pd.concat(
        [read_table(p) for p in measure_csvs],
        ignore_index=True,
    ).sort_values(["snapshot", "subhalo_id"], ascending=[False, True], kind="stable")
    plan, summary = plan_views(measured.reset_index(drop=True), balancing)
    for lo, hi, n, v in zip(summary["bin_edges"][:-1], summary["bin_edges"][1:],
                            summary["galaxies_per_bin"], summary["views_per_galaxy"],
                            strict=True):
        log.info("f_ex in [%.2f, %.2f): %4d galaxies x %2d views", lo, hi, n, v)
    with atomic_output(out_plan) as tmp:
        plan.to_csv(tmp, index=False)
    write_json_atomic(out_summary, summary)
    return plan

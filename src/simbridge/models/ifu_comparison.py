"""The ex-situ model on ideal and IFU-like conditions, compared on the same test galaxies.

Three evaluations (each :func:`simbridge.models.evaluation.evaluate_model`): the ideal-trained
model on the ideal test split, the IFU-trained model on the IFU-like test split, and the
ideal-trained model applied to the IFU-like test split (the mistake a user makes who trains on
ideal projections and applies the model to survey maps). The test samples are matched by
(snapshot, subhalo, view); residuals of all three are compared on the **same pixels**: the
IFU-like galaxy mask (footprint and S/N cut, inside the ideal mask). Coverage comes from each
evaluation's own metrics (the ideal one over the ideal galaxy pixels, the two IFU ones over
the IFU-like galaxy pixels). The residual profile is binned in R / R_e, R_e the view's
projected r-band half-light radius.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from simbridge.io import write_json_atomic

log = logging.getLogger(__name__)

#: The three comparisons: name -> (test split, metrics, posterior input keys) and description.
CASES: dict[str, tuple[str, str, str, str]] = {
    "ideal_on_ideal": ("ideal_test", "ideal_metrics", "ideal_posterior",
                       "ideal-trained model on ideal (mass-weighted, no PSF, no noise) maps"),
    "ifu_on_ifu": ("ifu_test", "ifu_metrics", "ifu_posterior",
                   "IFU-trained model on IFU-like maps"),
    "ideal_on_ifu": ("ifu_test", "mistake_metrics", "mistake_posterior",
                     "ideal-trained model applied to IFU-like maps (the mistake)"),
}
_KEYS = ("snapshot", "subhalo_id", "view_index")


def _keys(h5: h5py.File) -> list[tuple[int, int, int]]:
    return list(zip(*(h5[k][:].tolist() for k in _KEYS), strict=True))


def radius_in_effective_radii(pixel_size_kpc: np.ndarray, effective_radius_kpc: np.ndarray,
                              npix: int) -> np.ndarray:
    """(N, n, n) distance of every pixel centre from the map centre in units of R_e."""
    c = (np.arange(npix) + 0.5 - 0.5 * npix)
    r_pix = np.hypot(c[None, :], c[:, None])
    return r_pix[None] * (pixel_size_kpc / effective_radius_kpc)[:, None, None]


def compare_ifu_models(inputs: Mapping[str, str], radius_bins: Sequence[float],
                       out_metrics: str | Path) -> dict[str, Any]:
    """Write the comparison's metrics JSON (``inputs``: the rule's named inputs)."""
    with h5py.File(inputs["ifu_test"], "r") as h5:
        ifu_keys = _keys(h5)
        ifu_mask = h5["galaxy_mask"][:].astype(bool)
        truth = h5["exsitu_fraction_map"][:].astype(np.float64)
        radius = radius_in_effective_radii(h5["pixel_size_kpc"][:],
                                           h5["effective_radius_kpc"][:], ifu_mask.shape[-1])
    with h5py.File(inputs["ideal_test"], "r") as h5:
        ideal_index = {k: i for i, k in enumerate(_keys(h5))}
        ideal_truth = h5["exsitu_fraction_map"][:]
    common = [i for i, k in enumerate(ifu_keys) if k in ideal_index]
    ideal_rows = [ideal_index[ifu_keys[i]] for i in common]
    if not common:
        raise ValueError("no test sample is in both the ideal and the IFU-like test split")
    if not np.array_equal(ideal_truth[ideal_rows], truth[common]):
        raise ValueError("the ideal and IFU-like test splits disagree on the ex-situ maps")
    mask, truth, radius = ifu_mask[common], truth[common], radius[common]
    edges = np.asarray(radius_bins, dtype=np.float64)
    which = np.digitize(radius[mask], edges) - 1

    metrics: dict[str, Any] = {
        "n_test_samples": len(common),
        "n_test_galaxies": len({ifu_keys[i][:2] for i in common}),
        "n_pixels": int(mask.sum()),
        "pixels": "IFU-like galaxy mask (footprint, S/N cut, ideal map defined) of each sample",
        "radius_bins_effective_radii": edges.tolist(),
        "cases": {},
    }
    for case, (test_key, metrics_key, posterior_key, description) in CASES.items():
        rows = ideal_rows if test_key == "ideal_test" else common
        with h5py.File(inputs[posterior_key], "r") as h5:
            mean = h5["posterior_mean"][:][rows].astype(np.float64)  # (N, modes, n, n)
            modes = [str(m) for m in h5["posterior_mean"].attrs["modes"]]
        own = json.loads(Path(inputs[metrics_key]).read_text())
        entry: dict[str, Any] = {"description": description, "modes": {}}
        for k, mode in enumerate(modes):
            res = (mean[:, k] - truth)[mask]
            profile = []
            for b in range(edges.size - 1):
                sel = which == b
                profile.append({
                    "r_min": float(edges[b]), "r_max": float(edges[b + 1]),
                    "n_pixels": int(sel.sum()),
                    "mean_abs_residual": float(np.abs(res[sel]).mean()) if sel.any() else None,
                    "mean_signed_residual": float(res[sel].mean()) if sel.any() else None,
                })
            own_mode = own["modes"][mode]
            entry["modes"][mode] = {
                "mean_abs_residual": float(np.abs(res).mean()),
                "mean_signed_residual": float(res.mean()),
                "rms_residual": float(np.sqrt((res**2).mean())),
                "residual_vs_radius": profile,
                "coverage": own_mode["coverage"],
                "coverage_mean_abs_error": own_mode["coverage_mean_abs_error"],
                "coverage_pixels": ("ideal galaxy mask" if test_key == "ideal_test"
                                    else "IFU-like galaxy mask"),
                "mean_abs_residual_own_pixels": own_mode["mean_abs_residual"],
            }
        entry["credible_levels"] = own["credible_levels"]
        entry["n_draws"] = own.get("n_draws")  # posterior draws per map of that evaluation
        metrics["cases"][case] = entry
    flow = {c: metrics["cases"][c]["modes"]["flow"]["mean_abs_residual"] for c in CASES}
    metrics["checks"] = {
        "ifu_trained_beats_ideal_trained_on_ifu_maps": flow["ifu_on_ifu"] < flow["ideal_on_ifu"],
        "ideal_maps_beat_ifu_maps": flow["ideal_on_ideal"] < flow["ifu_on_ifu"],
    }
    log.info("flow-mode mean |residual| on the IFU pixels: %s",
             {c: round(v, 4) for c, v in flow.items()})
    write_json_atomic(out_metrics, metrics)
    return metrics

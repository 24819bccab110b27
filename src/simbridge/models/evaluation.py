"""Evaluation of the ex-situ posterior on the test split (galaxy pixels only).

For every test sample and each inference mode (reconstruction, prior, flow) the posterior is
represented by N decoded draws; its mean is compared with the true map (absolute pixel
residuals) and its central credible intervals are checked for coverage of the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from simbridge.io import atomic_output, write_json_atomic
from simbridge.models.data import ExsituMapDataset
from simbridge.models.exsitu import (
    MODES,
    RETRAIN_FIX,
    cvae_from_payload,
    flow_from_payload,
    load_payload,
    posterior_draws,
    require_npix,
    sample_loader,
)
from simbridge.models.training import autocast, derive_seed, select_device

log = logging.getLogger(__name__)

#: Bins of absolute residual for the histograms in metrics.json and the figure.
RESIDUAL_EDGES = np.linspace(0.0, 1.0, 51)
#: Bins of the true ex-situ fraction for the residual-against-truth curves.
TRUTH_EDGES = np.linspace(0.0, 1.0, 11)


def central_intervals(draws: np.ndarray, levels: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of central credible intervals from draws along axis 0.

    Returns two arrays of shape (len(levels), *draws.shape[1:]): the (1-l)/2 and (1+l)/2
    quantiles. They use the Weibull plotting position (numpy method "weibull": the k-th of N
    sorted draws sits at k/(N+1)), for which a new value from the same distribution falls inside
    with probability l; numpy's default linear rule would cover only l (N-1)/(N+1).
    """
    levels = np.asarray(levels, dtype=float)
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"credible levels must lie in (0, 1), got {levels.tolist()}")
    q = np.concatenate([(1 - levels) / 2, (1 + levels) / 2])
    bounds = np.quantile(draws, q, axis=0, method="weibull")
    return bounds[: len(levels)], bounds[len(levels):]


def max_resolved_level(n_draws: int) -> float:
    """The widest central interval N draws resolve: between the smallest and the largest."""
    return (n_draws - 1) / (n_draws + 1)


def coverage_hits(draws: np.ndarray, truth: np.ndarray, levels: Sequence[float],
                  tolerance: float = 0.0) -> np.ndarray:
    """For each level, how many truth values fall inside their central credible interval.

    ``draws``: (n_draws, n_values); ``truth``: (n_values,). Intervals are widened by
    ``tolerance`` on both sides. Returns counts of shape (n_levels,).
    """
    lower, upper = central_intervals(draws, levels)
    inside = (truth[None] >= lower - tolerance) & (truth[None] <= upper + tolerance)
    return inside.sum(axis=1)


def binned_residuals(truth: np.ndarray, residual: np.ndarray, edges: np.ndarray = TRUTH_EDGES
                     ) -> dict[str, list]:
    """Mean and median absolute residual, mean signed residual and counts per truth bin."""
    idx = np.clip(np.digitize(truth, edges) - 1, 0, len(edges) - 2)
    out: dict[str, list] = {"bin_edges": edges.tolist(), "count": [], "mean_abs": [],
                            "median_abs": [], "mean_signed": []}
    for b in range(len(edges) - 1):
        sel = idx == b
        out["count"].append(int(sel.sum()))
        if sel.any():
            out["mean_abs"].append(float(np.abs(residual[sel]).mean()))
            out["median_abs"].append(float(np.median(np.abs(residual[sel]))))
            out["mean_signed"].append(float(residual[sel].mean()))
        else:
            for k in ("mean_abs", "median_abs", "mean_signed"):
                out[k].append(None)
    return out


def evaluate_model(
    cvae_path: str | Path,
    flow_path: str | Path,
    test_h5: str | Path,
    settings: dict[str, Any],
    out_metrics: str | Path,
    out_posterior: str | Path,
    device: str = "auto",
    batch_size: int = 8,
    loader_workers: int = 0,
) -> dict[str, Any]:
    """Draw posteriors for every test sample in three modes; write posterior maps and metrics.

    ``settings``: seed, n_draws, credible_levels. Residuals are posterior mean minus truth on
    galaxy pixels (galaxy_mask == 1). Returns the metrics dictionary.
    """
    dev = select_device(device)
    payloads = {"cvae": load_payload(cvae_path, "exsitu_cvae"),
                "flow": load_payload(flow_path, "exsitu_flow")}
    cvae = cvae_from_payload(payloads["cvae"], dev)
    flow = flow_from_payload(payloads["flow"], dev)
    ds = ExsituMapDataset(test_h5)
    require_npix(ds, cvae.arch.npix, f"the cVAE {cvae_path}", RETRAIN_FIX)
    n_draws = int(settings["n_draws"])
    levels = [float(x) for x in settings["credible_levels"]]
    tolerance = float(settings.get("coverage_tolerance", 0.0))
    if max(levels) > max_resolved_level(n_draws):
        log.warning("credible level %g needs more than %d draws (the widest interval they "
                    "resolve is %.3f); raise exsitu_model.evaluation.n_draws", max(levels),
                    n_draws, max_resolved_level(n_draws))
    n, npix = len(ds), ds.npix
    torch.manual_seed(derive_seed(settings["seed"], "evaluation"))

    signed: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    stds: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    hits = {m: np.zeros(len(levels), dtype=np.int64) for m in MODES}
    hits_interior = {m: np.zeros(len(levels), dtype=np.int64) for m in MODES}
    n_interior = 0
    truths: list[np.ndarray] = []
    per_sample = {m: np.zeros(n) for m in MODES}
    with atomic_output(out_posterior) as tmp, h5py.File(tmp, "w") as h5:
        means_ds = h5.create_dataset("posterior_mean", (n, len(MODES), npix, npix), "f4",
                                     chunks=(1, len(MODES), npix, npix), compression="lzf")
        std_ds = h5.create_dataset("posterior_std", (n, len(MODES), npix, npix), "f4",
                                   chunks=(1, len(MODES), npix, npix), compression="lzf")
        for name, d in (("posterior_mean", means_ds), ("posterior_std", std_ds)):
            d.attrs["modes"] = list(MODES)
            d.attrs["units"] = "ex-situ stellar mass fraction"
            d.attrs["description"] = f"{name.split('_')[1]} of {n_draws} decoded posterior draws"
        h5.attrs["test_file"] = str(test_h5)
        h5.attrs["n_draws"] = n_draws
        h5.attrs["sample_index_note"] = "sample i is sample i of the test split file"
        start = 0
        loader = sample_loader(ds, None, batch_size, loader_workers, dev)
        for cond, target, mask in tqdm(loader, desc="posterior draws", mininterval=5.0):
            cond, target, mask = (t.to(dev) for t in (cond, target, mask))
            stop = start + len(cond)
            m = mask[:, 0].bool().cpu().numpy()
            t = target[:, 0].cpu().numpy()
            truths.append(t[m])
            interior = m & (t > 0) & (t < 1)
            n_interior += int(interior.sum())
            batch_means, batch_stds = [], []
            for mode in MODES:
                with autocast(dev):
                    draws = posterior_draws(cvae, flow, cond, mask, target, mode, n_draws)
                draws = draws.float().cpu().numpy()
                mean, std = draws.mean(0), draws.std(0)
                batch_means.append(mean)
                batch_stds.append(std)
                res = mean - t
                signed[mode].append(res[m])
                stds[mode].append(std[m])
                hits[mode] += coverage_hits(draws[:, m], t[m], levels, tolerance)
                hits_interior[mode] += coverage_hits(draws[:, interior], t[interior], levels)
                with np.errstate(invalid="ignore"):  # a map without galaxy pixels gives NaN
                    per_sample[mode][start:stop] = (np.abs(res) * m).sum((1, 2)) / m.sum((1, 2))
            means_ds[start:stop] = np.stack(batch_means, axis=1)
            std_ds[start:stop] = np.stack(batch_stds, axis=1)
            start = stop
        h5.create_dataset("mean_abs_residual_per_sample",
                          data=np.stack([per_sample[m] for m in MODES], axis=1).astype("f4"))

    truth = np.concatenate(truths)
    metrics: dict[str, Any] = {
        "n_samples": int(n), "n_galaxy_pixels": int(truth.size), "n_draws": n_draws,
        "npix": int(npix), "credible_levels": levels, "modes": {},
        "fraction_of_pixels_at_0": float((truth == 0).mean()),
        "fraction_of_pixels_at_1": float((truth == 1).mean()),
        "coverage_tolerance": tolerance,
        "coverage_definition": (
            "coverage: fraction of galaxy pixels whose true fraction lies in the central "
            "interval of the draws (Weibull quantiles) widened by coverage_tolerance; "
            "coverage_interior: pixels with 0 < truth < 1 only, no tolerance (a sigmoid output "
            "never reaches 0 or 1 exactly). Draws are decoded means: pixel shot noise is not "
            "part of the posterior"),
        "residual_definition": "posterior mean minus true ex-situ fraction, galaxy pixels of "
                               "the test split",
    }
    with h5py.File(test_h5, "r") as h5:
        if "subhalo_id" in h5 and "snapshot" in h5:
            ids = set(zip(h5["snapshot"][:].tolist(), h5["subhalo_id"][:].tolist(), strict=True))
            metrics["n_galaxies"] = len(ids)
    for mode in MODES:
        sgn = np.concatenate(signed[mode])
        res = np.abs(sgn)
        counts, _ = np.histogram(np.clip(res, 0, 1), bins=RESIDUAL_EDGES)
        metrics["modes"][mode] = {
            "mean_abs_residual": float(res.mean()),
            "median_abs_residual": float(np.median(res)),
            "rms_residual": float(np.sqrt((sgn**2).mean())),
            "mean_signed_residual": float(sgn.mean()),
            "mean_posterior_std": float(np.concatenate(stds[mode]).mean()),
            "mean_abs_residual_per_sample_median": float(np.nanmedian(per_sample[mode])),
            "coverage": {f"{lv:g}": float(h / truth.size) for lv, h in
                         zip(levels, hits[mode], strict=True)},
            "coverage_mean_abs_error": float(np.mean(np.abs(hits[mode] / truth.size
                                                            - np.asarray(levels)))),
            "coverage_interior": {f"{lv:g}": float(h / max(n_interior, 1)) for lv, h in
                                  zip(levels, hits_interior[mode], strict=True)},
            "residual_histogram": {"bin_edges": RESIDUAL_EDGES.tolist(),
                                   "counts": counts.tolist()},
            "residual_vs_truth": binned_residuals(truth, sgn),
        }
    r = {m: metrics["modes"][m]["mean_abs_residual"] for m in MODES}
    metrics["checks"] = {
        "flow_beats_prior": r["flow"] < r["prior"],
        "reconstruction_beats_flow_and_prior": r["reconstruction"] < min(r["flow"], r["prior"]),
    }
    for kind, payload in payloads.items():
        metrics[f"{kind}_best_epoch"] = int(payload["best_epoch"])
        metrics[f"{kind}_best_val_loss"] = float(payload["best_val_loss"])
        for key, value in payload.get("best_row", {}).items():
            if key.startswith("val_") and key != "val_loss":
                metrics[f"{kind}_best_{key}"] = value
    model_settings = payloads["cvae"]["settings"]
    metrics["latent_dim"] = int(model_settings["latent_dim"])
    metrics["beta"] = float(model_settings["beta"])
    log.info("mean |residual| per pixel: %s", {m: round(v, 4) for m, v in r.items()})
    if not metrics["checks"]["flow_beats_prior"]:
        log.warning("flow sampling does not beat prior sampling on the test split")
    write_json_atomic(out_metrics, metrics)
    return metrics

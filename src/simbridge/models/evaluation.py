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
    load_trained_model,
    posterior_likelihoods,
    require_npix,
    sample_loader,
)
from simbridge.models.likelihood import (
    N_BETA,
    mixture_pit,
    pit_coverage,
    zoib_mean,
    zoib_parameters,
    zoib_sample,
    zoib_variance,
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


#: Groups of the true fraction for the calibration curves: exactly 0, five interior bins,
#: exactly 1 (the point masses of the likelihood get groups of their own).
CALIBRATION_GROUPS = ("0", "(0, 0.2)", "[0.2, 0.4)", "[0.4, 0.6)", "[0.6, 0.8)", "[0.8, 1)", "1")
#: Bins of the PIT histograms.
PIT_EDGES = np.linspace(0.0, 1.0, 21)


def calibration_group(truth: np.ndarray) -> np.ndarray:
    """Index into CALIBRATION_GROUPS of every true fraction."""
    interior = np.clip((truth * 5).astype(int), 0, 4) + 1
    return np.where(truth <= 0, 0, np.where(truth >= 1, 6, interior))


def _draw_parameters(raw: torch.Tensor, m: np.ndarray) -> dict[str, np.ndarray]:
    """ZOIB parameters of K draws at the galaxy pixels ``m`` (B, n, n): arrays (K, [C,] M)."""
    p = zoib_parameters(raw)
    out = {k: p[k].cpu().numpy()[:, m].astype(np.float64) for k in ("pi_0", "pi_1")}
    for k in ("pi_c", "alpha", "beta"):  # (K, B, C, n, n) -> (K, C, M)
        out[k] = np.moveaxis(p[k].cpu().numpy(), 2, 1)[:, :, m].astype(np.float64)
    return out


def _coverage_block(hits: np.ndarray, total: int, levels: Sequence[float]) -> dict[str, Any]:
    cov = hits / max(total, 1)
    err = np.abs(cov - np.asarray(levels))
    return {"coverage": {f"{lv:g}": float(c) for lv, c in zip(levels, cov, strict=True)},
            "mean_abs_error": float(err.mean()), "max_abs_error": float(err.max())}


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

    ``settings``: seed, n_draws, credible_levels (and coverage_tolerance, calibration_tolerance;
    n_draws_key: the config key named when n_draws is too small).
    Residuals are posterior mean minus truth on galaxy pixels (galaxy_mask == 1). Two
    posteriors are judged per mode:

    * the posterior of the **mean map**: the likelihood's mean map of each latent draw
      (what the ex-situ work shows; it carries the galaxy-level uncertainty only), with
      central intervals of the draws widened by coverage_tolerance;
    * the **posterior predictive** per pixel: the mixture over latent draws of the pixel's
      zero-one-inflated Beta, judged by its randomized PIT (exact, no tolerance).

    Returns the metrics dictionary.
    """
    dev = select_device(device)
    trained = load_trained_model(cvae_path, flow_path, dev)
    payloads, cvae, flow = trained.payloads, trained.cvae, trained.flow
    scale = trained.concentration_scale
    ds = ExsituMapDataset(test_h5)
    require_npix(ds, cvae.arch.npix, f"the cVAE {cvae_path}", RETRAIN_FIX)
    n_draws = int(settings["n_draws"])
    levels = [float(x) for x in settings["credible_levels"]]
    lv = np.asarray(levels)
    tolerance = float(settings.get("coverage_tolerance", 0.0))
    if max(levels) > max_resolved_level(n_draws):
        log.warning("credible level %g needs more than %d draws (the widest interval they "
                    "resolve is %.3f); raise %s", max(levels), n_draws,
                    max_resolved_level(n_draws),
                    settings.get("n_draws_key", "exsitu_model.evaluation.n_draws"))
    n, npix = len(ds), ds.npix
    torch.manual_seed(derive_seed(settings["seed"], "evaluation"))
    pit_rng = np.random.default_rng(derive_seed(settings["seed"], "evaluation", "pit"))

    signed: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    stds: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    pred_stds: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    pits: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    pits_interior: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    hits = {m: np.zeros(len(levels), dtype=np.int64) for m in MODES}
    hits_interior = {m: np.zeros(len(levels), dtype=np.int64) for m in MODES}
    n_interior = 0
    truths: list[np.ndarray] = []
    per_sample = {m: np.zeros(n) for m in MODES}
    with atomic_output(out_posterior) as tmp, h5py.File(tmp, "w") as h5:
        shape, chunks = (n, len(MODES), npix, npix), (1, len(MODES), npix, npix)
        out_ds = {name: h5.create_dataset(name, shape, "f4", chunks=chunks, compression="lzf")
                  for name in ("posterior_mean", "posterior_std", "predictive_std")}
        draw_ds = h5.create_dataset("predictive_draw", shape, "f4", chunks=chunks,
                                    compression="lzf")
        descriptions = {
            "posterior_mean": f"mean of {n_draws} posterior draws (equal for the mean map and "
                              "the predictive)",
            "posterior_std": f"std of the mean maps of {n_draws} latent draws (posterior of the "
                             "mean map)",
            "predictive_std": "std of the posterior predictive per pixel (mixture over the "
                              "latent draws of the pixel likelihood)",
            "predictive_draw": "one draw of the posterior predictive: a plausible ex-situ map",
        }
        for name, d in {**out_ds, "predictive_draw": draw_ds}.items():
            d.attrs["modes"] = list(MODES)
            d.attrs["units"] = "ex-situ stellar mass fraction"
            d.attrs["description"] = descriptions[name]
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
            batch = {k: [] for k in ("posterior_mean", "posterior_std", "predictive_std",
                                     "predictive_draw")}
            for mode in MODES:
                with autocast(dev):
                    raw = posterior_likelihoods(cvae, flow, cond, mask, target, mode, n_draws,
                                                concentration_scale=scale)
                mean_maps = zoib_mean(raw).cpu().numpy().astype(np.float64)
                second = (zoib_variance(raw).cpu().numpy() + mean_maps**2).mean(0)
                mean, std = mean_maps.mean(0), mean_maps.std(0)
                pred_std = np.sqrt(np.clip(second - mean**2, 0.0, None))
                batch["posterior_mean"].append(mean)
                batch["posterior_std"].append(std)
                batch["predictive_std"].append(pred_std)
                batch["predictive_draw"].append(zoib_sample(raw[0]).cpu().numpy())
                res = mean - t
                signed[mode].append(res[m])
                stds[mode].append(std[m])
                pred_stds[mode].append(pred_std[m])
                hits[mode] += coverage_hits(mean_maps[:, m], t[m], levels, tolerance)
                hits_interior[mode] += coverage_hits(mean_maps[:, interior], t[interior], levels)
                pit, pit_int = mixture_pit(_draw_parameters(raw, m), t[m],
                                           pit_rng.random(int(m.sum())))
                pits[mode].append(pit)
                pits_interior[mode].append(pit_int)
                with np.errstate(invalid="ignore"):  # a map without galaxy pixels gives NaN
                    per_sample[mode][start:stop] = (np.abs(res) * m).sum((1, 2)) / m.sum((1, 2))
            for name, values in batch.items():
                dset = draw_ds if name == "predictive_draw" else out_ds[name]
                dset[start:stop] = np.stack(values, axis=1)
            start = stop
        h5.create_dataset("mean_abs_residual_per_sample",
                          data=np.stack([per_sample[m] for m in MODES], axis=1).astype("f4"))

    truth = np.concatenate(truths)
    groups = calibration_group(truth)
    calibration_tolerance = float(settings.get("calibration_tolerance", 0.05))
    metrics: dict[str, Any] = {
        "n_samples": int(n), "n_galaxy_pixels": int(truth.size), "n_draws": n_draws,
        "npix": int(npix), "credible_levels": levels, "modes": {},
        "fraction_of_pixels_at_0": float((truth == 0).mean()),
        "fraction_of_pixels_at_1": float((truth == 1).mean()),
        "n_interior_pixels": int(n_interior),
        "likelihood": f"zero-one-inflated Beta per pixel ({N_BETA} Beta component(s))",
        "concentration_scale": scale,
        "coverage_tolerance": tolerance,
        "calibration_tolerance": calibration_tolerance,
        "coverage_definition": {
            "predictive": (
                "posterior predictive per pixel (mixture over the latent draws of the pixel's "
                "zero-one-inflated Beta): a central interval of level l covers the truth when "
                "the randomized PIT u = F(y-) + U (F(y) - F(y-)) satisfies |u - 1/2| <= l/2 "
                "(exact for point masses at 0 and 1, no tolerance); coverage_interior uses the "
                "CDF of the predictive's continuous part for pixels with 0 < truth < 1"),
            "mean_map": (
                "posterior of the mean map (the likelihood's mean map of each latent draw): "
                "fraction of galaxy pixels whose true fraction lies in the central interval of "
                "the draws (Weibull quantiles) widened by coverage_tolerance; "
                "coverage_interior: pixels with 0 < truth < 1, no tolerance"),
        },
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
        pit = np.concatenate(pits[mode])
        pit_int = np.concatenate(pits_interior[mode])
        pit_int = pit_int[np.isfinite(pit_int)]
        pred_all = _coverage_block(pit_coverage(pit, lv) * pit.size, pit.size, levels)
        pred_int = _coverage_block(pit_coverage(pit_int, lv) * pit_int.size, pit_int.size,
                                   levels)
        mean_all = _coverage_block(hits[mode], truth.size, levels)
        mean_int = _coverage_block(hits_interior[mode], n_interior, levels)
        by_group = {}
        for g, label in enumerate(CALIBRATION_GROUPS):
            sel = groups == g
            by_group[label] = {
                "n_pixels": int(sel.sum()),
                "coverage": ([float(c) for c in pit_coverage(pit[sel], lv)]
                             if sel.any() else None),
                "mean_predicted": float(np.mean(sgn[sel] + truth[sel])) if sel.any() else None,
            }
        metrics["modes"][mode] = {
            "mean_abs_residual": float(res.mean()),
            "median_abs_residual": float(np.median(res)),
            "rms_residual": float(np.sqrt((sgn**2).mean())),
            "mean_signed_residual": float(sgn.mean()),
            "mean_posterior_std": float(np.concatenate(stds[mode]).mean()),
            "mean_predictive_std": float(np.concatenate(pred_stds[mode]).mean()),
            "mean_abs_residual_per_sample_median": float(np.nanmedian(per_sample[mode])),
            # the headline coverage is the predictive's (the sweep table compares these)
            "coverage": pred_all["coverage"],
            "coverage_interior": pred_int["coverage"],
            "coverage_mean_abs_error": pred_all["mean_abs_error"],
            "predictive": {
                "coverage": pred_all["coverage"], "coverage_interior": pred_int["coverage"],
                "coverage_mean_abs_error": pred_all["mean_abs_error"],
                "coverage_max_abs_error": pred_all["max_abs_error"],
                "coverage_interior_mean_abs_error": pred_int["mean_abs_error"],
                "coverage_interior_max_abs_error": pred_int["max_abs_error"],
                "pit_histogram": {"bin_edges": PIT_EDGES.tolist(),
                                  "counts": np.histogram(pit, PIT_EDGES)[0].tolist()},
                "pit_histogram_interior": {"bin_edges": PIT_EDGES.tolist(),
                                           "counts": np.histogram(pit_int, PIT_EDGES)[0].tolist()},
                "coverage_by_true_fraction": by_group,
            },
            "mean_map": {
                "coverage": mean_all["coverage"], "coverage_interior": mean_int["coverage"],
                "coverage_mean_abs_error": mean_all["mean_abs_error"],
                "coverage_interior_mean_abs_error": mean_int["mean_abs_error"],
            },
            "residual_histogram": {"bin_edges": RESIDUAL_EDGES.tolist(),
                                   "counts": counts.tolist()},
            "residual_vs_truth": binned_residuals(truth, sgn),
        }
    r = {m: metrics["modes"][m]["mean_abs_residual"] for m in MODES}
    metrics["checks"] = {
        "flow_beats_prior": r["flow"] < r["prior"],
        "reconstruction_beats_flow_and_prior": r["reconstruction"] < min(r["flow"], r["prior"]),
        "flow_predictive_calibrated": bool(
            max(metrics["modes"]["flow"]["predictive"]["coverage_max_abs_error"],
                metrics["modes"]["flow"]["predictive"]["coverage_interior_max_abs_error"])
            <= calibration_tolerance),
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
    flow_pred = metrics["modes"]["flow"]["predictive"]
    log.info("flow predictive coverage: max |coverage - level| %.3f (all galaxy pixels), %.3f "
             "(0 < truth < 1)", flow_pred["coverage_max_abs_error"],
             flow_pred["coverage_interior_max_abs_error"])
    write_json_atomic(out_metrics, metrics)
    return metrics

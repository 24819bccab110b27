"""Likelihood-ratio scores of image sets and their bootstrap summaries.

E_q[LLR] = KL(q || p_archetype) - KL(q || p_obs): a set q closer to the observations than to
their smooth Sersic archetypes scores higher; the observed set's own held-out images are the
reference.

The two models of a pair are fine-tuned from one shared initialisation (a PixelCNN pretrained
on the observed and archetype images pooled; realism.pixelcnn.shared_init), so that their
description of the sky cancels: the empty-sky control then scores near zero, and the margins
between variants are not carried by a background offset between the models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from simbridge.models.realism.pixelcnn import PixelCNN, log_likelihood_ratio
from simbridge.models.training import derive_seed

log = logging.getLogger(__name__)


def _over_spread(value: float, llr: np.ndarray) -> float | None:
    """value / std(llr), None when the spread is zero or undefined."""
    spread = float(np.std(llr)) if len(llr) > 1 else 0.0
    return float(value) / spread if spread > 0 else None


@torch.no_grad()
def score_images(model_obs: PixelCNN, model_arch: PixelCNN, images: np.ndarray,
                 batch_size: int = 64) -> dict[str, np.ndarray]:
    """log p under both models, the LLR per image and the per-pixel LLR maps of (N, m, m)."""
    out: dict[str, list] = {"logp_obs": [], "logp_archetype": [], "llr": [], "llr_map": []}
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(images[start:start + batch_size], dtype=torch.float32)[:, None]
        llr, llr_map = log_likelihood_ratio(model_obs, model_arch, x)
        out["logp_obs"].append(model_obs.log_prob(x).numpy())
        out["logp_archetype"].append(model_arch.log_prob(x).numpy())
        out["llr"].append(llr.numpy())
        out["llr_map"].append(llr_map.numpy())
    m = images.shape[-1]
    return {k: (np.concatenate(v) if v else np.zeros((0,) if k != "llr_map" else (0, m, m)))
            for k, v in out.items()}


def bootstrap_mean(values: np.ndarray, n_bootstrap: int, seed: int, label: str,
                   level: float = 0.68) -> dict[str, float]:
    """Mean of ``values`` with its bootstrap standard error and central interval."""
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(derive_seed(seed, "realism-bootstrap", label))
    means = v[rng.integers(0, len(v), (n_bootstrap, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()),
            "bootstrap_se": float(means.std()), "interval_low": float(lo),
            "interval_high": float(hi), "n": len(v)}


def bootstrap_difference(a: np.ndarray, b: np.ndarray, n_bootstrap: int, seed: int,
                         label: str) -> dict[str, float]:
    """mean(a) - mean(b) with its bootstrap standard error and the share of resamples > 0."""
    rng = np.random.default_rng(derive_seed(seed, "realism-difference", label))
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ma = a[rng.integers(0, len(a), (n_bootstrap, len(a)))].mean(axis=1)
    mb = b[rng.integers(0, len(b), (n_bootstrap, len(b)))].mean(axis=1)
    d = ma - mb
    return {"difference": float(a.mean() - b.mean()), "bootstrap_se": float(d.std()),
            "fraction_positive": float((d > 0).mean())}


def bootstrap_trend(x: np.ndarray, llr: np.ndarray, n_bins: int, n_bootstrap: int, seed: int,
                    label: str, log_x: bool = False) -> dict[str, Any]:
    """Mean LLR in quantile bins of x, each with a bootstrap 68% interval."""
    x, llr = np.asarray(x, np.float64), np.asarray(llr, np.float64)
    ok = np.isfinite(x) & np.isfinite(llr)
    if log_x:
        ok &= x > 0
    x, llr = x[ok], llr[ok]
    if len(x) < 2 * n_bins:
        n_bins = max(1, len(x) // 2)
    if len(x) == 0:
        return {"bin_centre": [], "mean": [], "low": [], "high": [], "n": []}
    xs = np.log10(x) if log_x else x
    edges = np.unique(np.quantile(xs, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, len(edges) - 2)
    out: dict[str, list] = {"bin_centre": [], "mean": [], "low": [], "high": [], "n": []}
    for b in range(len(edges) - 1):
        sel = idx == b
        if sel.sum() == 0:
            continue
        s = bootstrap_mean(llr[sel], n_bootstrap, seed, f"{label}-{b}")
        centre = float(np.median(xs[sel]))
        out["bin_centre"].append(10**centre if log_x else centre)
        out["mean"].append(s["mean"])
        out["low"].append(s["interval_low"])
        out["high"].append(s["interval_high"])
        out["n"].append(int(sel.sum()))
    return out


# --------------------------------------------------------------------------- the whole evaluation

#: (manifest column, log-scale bins) of the LLR trends
TREND_PROPERTIES = {"stellar_mass_msun": True, "half_light_radius_kpc": True, "sersic_n": False}


def _set_rows(manifest: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    rows = manifest[manifest["row"] >= 0].sort_values("row")
    if split is not None:
        rows = rows[rows["split"] == split]
    return rows


def _summarise(scores: dict[str, dict], manifests: dict[str, pd.DataFrame],
               simulations: list[str], closest: str | None, cfg: dict[str, Any], seed: int,
               npix: int, tag: str) -> dict[str, Any]:
    n_boot = int(cfg["n_bootstrap"])
    sets = {}
    for name, sc in scores.items():
        s = bootstrap_mean(sc["llr"], n_boot, seed, f"{tag}-{name}")
        s["mean_per_pixel"] = s["mean"] / npix**2
        s["mean_logp_observed_model"] = float(np.mean(sc["logp_obs"]))
        s["mean_logp_archetype_model"] = float(np.mean(sc["logp_archetype"]))
        sets[name] = s
    ref = scores["observed_test"]["llr"]
    ranking = sorted(simulations, key=lambda n: sets[n]["mean"], reverse=True)
    out: dict[str, Any] = {
        "sets": sets,
        "ranking": ranking,
        "delta_to_observed": {n: bootstrap_difference(scores[n]["llr"], ref, n_boot, seed,
                                                      f"{tag}-delta-{n}") for n in simulations},
        "empty_sky_llr_per_pixel": sets["empty_sky"]["mean_per_pixel"],
        "empty_sky_over_observed": (sets["empty_sky"]["mean"] / sets["observed_test"]["mean"]
                                    if sets["observed_test"]["mean"] != 0 else None),
        # the control against the galaxies' spread: empty-sky mean LLR over the std of the
        # LLR of all galaxy images scored (observed test split and every simulation)
        "empty_sky_over_galaxy_spread": _over_spread(
            sets["empty_sky"]["mean"],
            np.concatenate([scores[n]["llr"] for n in ("observed_test", *simulations)])),
    }
    if closest is not None:
        others = [n for n in ranking if n != closest]
        margin = (bootstrap_difference(scores[closest]["llr"], scores[others[0]]["llr"], n_boot,
                                       seed, f"{tag}-margin") if others else None)
        out["closest_check"] = {"closest_simulation": closest,
                                "scores_highest": ranking[0] == closest,
                                "runner_up": others[0] if others else None,
                                "margin_over_runner_up": margin}
    trends: dict[str, Any] = {}
    for name in ["observed_test", *simulations]:
        rows = manifests[name]
        trends[name] = {col: bootstrap_trend(rows[col].to_numpy(np.float64)
                                             if col in rows else np.full(len(rows), np.nan),
                                             scores[name]["llr"], int(cfg["n_trend_bins"]),
                                             n_boot, seed, f"{tag}-{name}-{col}", log_x=logx)
                        for col, logx in TREND_PROPERTIES.items()}
    out["trends"] = trends
    return out


def evaluate_realism(inputs: dict[str, str], simulations: list[str], models: list[str],
                     closest: str | None, cfg: dict[str, Any], seed: int,
                     out_scores: str | Path, out_metrics: str | Path) -> dict[str, Any]:
    """Score every set under every model pair; write scores.h5 and metrics.json.

    ``inputs``: set_<name>, manifest_<name> for observed, archetype, empty_sky and every
    simulation, and model_<name> for every model. Sets scored: the observed set's held-out test
    split (the reference), the archetypes of that split, the empty sky and every simulation.
    """
    import h5py

    from simbridge.dataset.realism import read_image_manifest, read_model_input
    from simbridge.io import atomic_output, write_json_atomic
    from simbridge.models.realism.training import load_pixelcnn

    manifests_all = {n: read_image_manifest(inputs[f"manifest_{n}"])
                     for n in ["observed", "archetype", "empty_sky", *simulations]}
    images_all = {n: read_model_input(inputs[f"set_{n}"]) for n in manifests_all}
    test = _set_rows(manifests_all["observed"], "test")
    images = {"observed_test": images_all["observed"][test["row"].to_numpy()],
              "archetype_test": images_all["archetype"][test["row"].to_numpy()],
              "empty_sky": images_all["empty_sky"],
              **{n: images_all[n] for n in simulations}}
    manifests = {"observed_test": test, "archetype_test": test,
                 "empty_sky": _set_rows(manifests_all["empty_sky"]),
                 **{n: _set_rows(manifests_all[n]) for n in simulations}}
    npix = images["observed_test"].shape[-1]
    pairs = {"main": ("observed", "archetype")}
    if "observed_norot" in models:
        pairs["no_rotation"] = ("observed_norot", "archetype_norot")
    metrics: dict[str, Any] = {"model_input_npix": npix, "n_images": {
        n: len(v) for n, v in images.items()}}
    with atomic_output(out_scores) as tmp, h5py.File(tmp, "w") as fh:
        for pair, (m_obs, m_arch) in pairs.items():
            model_obs = load_pixelcnn(inputs[f"model_{m_obs}"])
            model_arch = load_pixelcnn(inputs[f"model_{m_arch}"])
            scores = {n: score_images(model_obs, model_arch, x) for n, x in images.items()}
            metrics[pair] = _summarise(scores, manifests, simulations, closest, cfg, seed, npix,
                                       pair)
            for name, sc in scores.items():
                g = fh.create_group(f"{pair}/{name}")
                for key, value in sc.items():
                    g.create_dataset(key, data=value.astype(np.float32))
                g["llr"].attrs["unit"] = "nats per image"
                g["llr_map"].attrs["unit"] = "nats per pixel"
                if pair == "main":
                    g.create_dataset("model_input", data=images[name])
                    rows = manifests[name]
                    for col in ("subhalo_id", *TREND_PROPERTIES):
                        if col in rows:
                            g.create_dataset(col, data=rows[col].to_numpy(np.float64))
        fh.attrs["sets"] = list(images)
        fh.attrs["pairs"] = list(pairs)
    for m in models:
        payload = torch.load(inputs[f"model_{m}"], map_location="cpu", weights_only=False)
        metrics.setdefault("models", {})[m] = {
            "best_epoch": int(payload["best_epoch"]),
            "best_validation_nll_per_pixel": float(payload["best_val_nll"]),
            "augment": bool(payload["augment"]),
            "fine_tuned_from_shared_init": bool(payload.get("fine_tuned", False))}
    metrics["notes"] = {
        "llr": "LLR = log p_obs(x) - log p_archetype(x) in nats per image (model input); "
               "empty_sky: the control, expected near zero (empty_sky_over_galaxy_spread: its "
               "mean LLR over the std of the LLR of all galaxy images scored; "
               "empty_sky_over_observed: over the observed test set's mean LLR)",
        "training": ("both models of a pair fine-tuned from a shared initialisation (the "
                     "'pooled' model, pretrained on observed + archetype training images) so "
                     "that the sky cancels in the LLR" if any(
                         m.startswith("pooled") for m in models) else
                     "both models of a pair trained independently from the same seed")}
    write_json_atomic(out_metrics, metrics)
    main = metrics["main"]
    log.info("LLR ranking %s; %s", main["ranking"], main.get("closest_check"))
    return metrics

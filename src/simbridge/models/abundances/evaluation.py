"""Test-split evaluation of the two-step inference: every number goes to metrics.json.

Step 1: accuracy, |error| <= 1 rate, mean absolute error, confusion matrix and error histogram
of each N_sub method. Step 2 (true N_sub; the calibration of the conditional posterior):
posterior median and 68% interval against truth, central-interval coverage, simulation-based
calibration ranks (sbi ``run_sbc``/``check_sbc``) and TARP expected coverage (sbi ``run_tarp``/
``check_tarp``); then the same posterior conditioned on the classifier's N_sub estimate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simbridge.io import write_json_atomic
from simbridge.models.abundances.data import (
    BLOCK_PARAMETERS,
    block_condition,
    block_rows,
    read_split,
    transform_x,
)
from simbridge.models.abundances.npe import load_posterior
from simbridge.models.abundances.two_step import load_classifier
from simbridge.models.training import derive_seed

log = logging.getLogger(__name__)


def nsub_scores(true: np.ndarray, estimate: np.ndarray, labels: Sequence[int]
                ) -> dict[str, Any]:
    """Accuracy, |error| <= 1 rate, MAE, confusion matrix (rows: true) and error histogram."""
    true, estimate = np.asarray(true, int), np.asarray(estimate, int)
    lo = labels[0]
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(cm, (true - lo, np.clip(estimate, lo, labels[-1]) - lo), 1)
    err = estimate - true
    errors = np.arange(err.min(), err.max() + 1)
    return {"accuracy": float(np.mean(err == 0)), "within_one": float(np.mean(np.abs(err) <= 1)),
            "mean_abs_error": float(np.mean(np.abs(err))), "bias": float(np.mean(err)),
            "confusion_matrix": cm.tolist(),
            "error_histogram": {"errors": errors.tolist(),
                                "counts": [int(np.sum(err == e)) for e in errors]}}


def central_coverage(samples: np.ndarray, truth: np.ndarray, levels: Sequence[float]
                     ) -> np.ndarray:
    """(levels, dims) fraction of truths inside the central credible interval of each level.

    ``samples`` (S, N, D) posterior draws per row, ``truth`` (N, D).
    """
    out = np.zeros((len(levels), truth.shape[1]))
    for k, level in enumerate(levels):
        lo = np.quantile(samples, 0.5 - level / 2, axis=0)
        hi = np.quantile(samples, 0.5 + level / 2, axis=0)
        out[k] = np.mean((truth >= lo) & (truth <= hi), axis=0)
    return out


def calibration_metrics(posterior: Any, theta: torch.Tensor, x: torch.Tensor,
                        n_samples: int, levels: Sequence[float], names: Sequence[str]
                        ) -> dict[str, Any]:
    """Posterior vs truth, coverage, SBC and TARP of ``posterior`` on rows (theta, x)."""
    from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

    samples = posterior.sample_batched((n_samples,), x=x, show_progress_bars=False).numpy()
    truth = theta.numpy()
    med = np.median(samples, axis=0)
    cov = central_coverage(samples, truth, levels)
    ranks, dap = run_sbc(theta, x, posterior, num_posterior_samples=n_samples,
                         show_progress_bar=False)
    sbc = check_sbc(ranks, theta, dap, num_posterior_samples=n_samples)
    ecp, alpha = run_tarp(theta, x, posterior, num_posterior_samples=n_samples,
                          show_progress_bar=False)
    atc, ks = check_tarp(ecp, alpha)
    ecp, alpha = ecp.numpy(), alpha.numpy()
    return {
        "parameter_names": list(names), "n_rows": int(len(truth)),
        "n_posterior_samples": int(n_samples),
        "posterior_vs_truth": {"truth": truth.tolist(), "median": med.tolist(),
                               "q16": np.quantile(samples, 0.16, axis=0).tolist(),
                               "q84": np.quantile(samples, 0.84, axis=0).tolist()},
        "median_abs_error": dict(zip(names, np.mean(np.abs(med - truth), axis=0).tolist(),
                                     strict=True)),
        "prior_width": dict(zip(names, (truth.max(0) - truth.min(0)).tolist(), strict=True)),
        "coverage": {"levels": list(levels),
                     "per_parameter": {n: cov[:, j].tolist() for j, n in enumerate(names)}},
        "sbc": {"ranks": ranks.numpy().astype(int).tolist(),
                "ks_pvalues": [float(v) for v in sbc["ks_pvals"]],
                "c2st_ranks": [float(v) for v in sbc["c2st_ranks"]],
                "c2st_dap": float(np.mean(np.asarray(sbc["c2st_dap"])))},
        "tarp": {"alpha": alpha.tolist(), "ecp": ecp.tolist(), "atc": float(atc),
                 "ks_pvalue": float(ks),
                 "max_abs_deviation": float(np.max(np.abs(ecp - alpha)))},
    }


@torch.no_grad()
def mnpe_nsub_probabilities(posterior: Any, x: torch.Tensor, n_classes: int) -> np.ndarray:
    """(N, classes) posterior probabilities of N_sub - N_min from the MNPE.

    sbi's mixed estimator models the discrete part first, p(N_sub | x), with a categorical
    net, so the marginal is exact (no sampling; sbi 0.27's sampler also fails on a single x).
    """
    est = posterior.posterior_estimator
    est.eval()
    cats = torch.arange(n_classes, dtype=torch.float32).reshape(n_classes, 1, 1)
    lp = est.discrete_net.log_prob(cats.expand(n_classes, len(x), 1), condition=x)
    return lp.exp().T.numpy()


def estimate_nsub(models: dict[str, str], test_x: np.ndarray, n_samples: int
                  ) -> dict[str, np.ndarray]:
    """N_sub estimates of every step-1 method for the test planes."""
    out = {}
    post, meta = load_posterior(models["nsub_npe"])
    lo, hi = meta["n_sub_range"]
    flat = transform_x(test_x, meta["x_scale"]).reshape(len(test_x), -1)
    s = post.sample_batched((n_samples,), x=flat, show_progress_bars=False)[..., 0].numpy()
    out["npe_rounded"] = np.clip(np.rint(np.median(s, axis=0)), lo, hi).astype(int)
    model, meta = load_classifier(models["nsub_classifier"])
    with torch.no_grad():
        logits = model(transform_x(test_x, meta["x_scale"]))
    out["classifier"] = logits.argmax(1).numpy() + lo
    if "nsub_mnpe" in models:
        post, meta = load_posterior(models["nsub_mnpe"])
        flat = transform_x(test_x, meta["x_scale"]).reshape(len(test_x), -1)
        out["mnpe_discrete"] = mnpe_nsub_probabilities(post, flat, hi - lo + 1).argmax(1) + lo
    return out


def evaluate(test_file: str | Path, models: dict[str, str], block_models: Sequence[str],
             tuning_json: dict[str, Any], config: dict[str, Any], out_metrics: str | Path
             ) -> dict[str, Any]:
    """Evaluate both steps on the test split; write metrics.json; return it."""
    from sbi.inference import EnsemblePosterior

    ev = config["abundances"]["inference"]["evaluation"]
    n_range = tuple(config["abundances"]["superposition"]["n_sub_range"])
    test = read_split(test_file, n_range)
    labels = list(range(n_range[0], n_range[1] + 1))
    torch.manual_seed(derive_seed(config["seed"], "evaluation"))
    estimates = estimate_nsub(models, test.x, ev["n_posterior_samples"])
    step1 = {"labels": labels, "n_test": int(len(test.n_sub)),
             "methods": {name: nsub_scores(test.n_sub, est, labels)
                         for name, est in estimates.items()}}
    posteriors, metas = zip(*(load_posterior(p) for p in block_models), strict=True)
    ensemble = EnsemblePosterior(list(posteriors))
    scale = metas[0]["x_scale"]
    theta, x, halo, rank = block_rows(test, scale, ev["n_sbc"], config["seed"], "evaluation")
    step2 = calibration_metrics(ensemble, theta, x, ev["n_posterior_samples"],
                                ev["credible_levels"], BLOCK_PARAMETERS)
    step2["ensemble_size"] = len(block_models)
    step2["calibrated_within_0.1"] = step2["tarp"]["max_abs_deviation"] <= 0.1
    # step 2 at inference: conditioned on the classifier's N_sub (ranks it has for the halo)
    n_est = estimates["classifier"][halo]
    usable = rank < n_est
    x_est = block_condition(test.x[halo[usable]], rank[usable], n_est[usable], n_range[1],
                            scale)
    draws = ensemble.sample_batched((ev["n_posterior_samples"],), x=x_est,
                                    show_progress_bars=False).numpy()
    truth = theta.numpy()[usable]
    step2["with_estimated_nsub"] = {
        "method": "classifier", "n_rows": int(usable.sum()),
        "median_abs_error": dict(zip(BLOCK_PARAMETERS, np.mean(np.abs(
            np.median(draws, axis=0) - truth), axis=0).tolist(), strict=True))}
    metrics = {"step1": step1, "step2": step2,
               "tuning": {k: tuning_json[k] for k in ("best_trial", "best_value",
                                                       "best_settings", "trials",
                                                       "importances")},
               "training": {Path(p).stem: m["summary"] for p, m in
                            zip(block_models, metas, strict=True)}}
    write_json_atomic(out_metrics, metrics)
    return metrics



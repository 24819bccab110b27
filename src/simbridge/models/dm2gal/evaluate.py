"""Evaluation of the two-phase model against the truth and the HOD on the held-out runs.

Phase 1: accuracy, recall and precision at the threshold chosen on the validation runs (the
lowest threshold whose validation accuracy reaches the goal, i.e. the highest recall there),
and the precision-recall curve. The predicted count field is the phase-2 count on flagged voxels
(dm2gal.evaluation.count_assignment): the phase-2 rate rounded, a seeded Poisson draw of it, or
``calibrated``: the expected count p * rate (phase-1 probability times phase-2 rate) on flagged
voxels, scaled by a factor fitted so that the rounded counts' total equals the run's predicted
total times the ratio true/predicted total measured on the validation runs (test runs are never
used to calibrate), then rounded, which puts the galaxies in the most likely voxels.
Power spectra of the truth, the prediction and the HOD mock (all
galaxy counts per voxel on the same grid), their ratios and r(k); the truth and HOD catalogues
also through the interlaced CIC estimator. Goals with how much they are missed by.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simbridge.extract.voxels import paint
from simbridge.models.dm2gal.hod import fit_hod, hod_galaxies, match_galaxies_to_halos
from simbridge.models.dm2gal.power import catalog_power_spectrum, cross_correlation, power_spectrum
from simbridge.models.dm2gal.train import load_network, load_runs, predict_grid
from simbridge.models.training import derive_seed


def halo_mass(grids: dict) -> np.ndarray:
    """M_200c, or 0.8 x the FoF mass for groups without an SO radius."""
    return np.where(grids["halo_m200c"] > 0, grids["halo_m200c"], 0.8 * grids["halo_mass_fof"])


def halo_radius(grids: dict) -> np.ndarray:
    """R_200c, or 0.3 Mpc/h where the SO search found none."""
    return np.where(grids["halo_r200c"] > 0, grids["halo_r200c"], 0.3)


def fit_hod_on_runs(grid_files: list[str], train_runs: list[str]) -> dict[str, Any]:
    """Fit the HOD to the training runs' N-body halos and their twins' galaxies."""
    runs = load_runs(grid_files)
    masses, counts, unmatched, total = [], [], 0, 0
    for run in train_runs:
        g = runs[run]
        c, miss = match_galaxies_to_halos(g["halo_pos"], halo_radius(g), g["galaxy_pos"],
                                          g["box_mpc_h"])
        masses.append(halo_mass(g))
        counts.append(c)
        unmatched += miss
        total += len(g["galaxy_pos"])
    hod = fit_hod(np.concatenate(masses), np.concatenate(counts))
    hod.update({"train_runs": list(train_runs), "n_galaxies": total,
                "n_galaxies_outside_halos": unmatched})
    return hod


def classification_metrics(truth: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Accuracy, recall and precision of voxel flags against voxels holding galaxies."""
    t, f = truth.ravel() > 0, flagged.ravel()
    tp, fp, fn = int((t & f).sum()), int((~t & f).sum()), int((t & ~f).sum())
    return {"accuracy": float((t == f).mean()), "recall": tp / max(tp + fn, 1),
            "precision": tp / max(tp + fp, 1), "n_true_voxels": int(t.sum()),
            "n_flagged_voxels": int(f.sum())}


def choose_threshold(truth: list[np.ndarray], prob: list[np.ndarray], accuracy_goal: float
                     ) -> tuple[float, str]:
    """The lowest probability threshold with accuracy >= goal on the validation runs (the best
    recall there); the most accurate threshold if none reaches the goal."""
    t = np.concatenate([x.ravel() > 0 for x in truth])
    p = np.concatenate([x.ravel() for x in prob])
    grid = np.unique(np.quantile(p, np.linspace(0.5, 0.9999, 400)))
    acc = np.array([((p >= th) == t).mean() for th in grid])
    ok = np.flatnonzero(acc >= accuracy_goal)
    if len(ok):
        return float(grid[ok[0]]), "lowest threshold reaching the accuracy goal on validation"
    return float(grid[int(np.argmax(acc))]), "most accurate threshold on validation (goal missed)"


def precision_recall_curve(truth: np.ndarray, score: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold (descending), plus the (1, 0)
    end point, as scikit-learn orders them (recall decreasing)."""
    order = np.argsort(-score, kind="stable")
    s, t = score[order], truth[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(t)[last]
    fp = (last + 1) - tp
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(t.sum(), 1)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def rounded_to_total(expected: np.ndarray, total: float) -> np.ndarray:
    """floor(c * expected + 0.5) with the scale c >= 0 (bisection) whose sum is closest to
    ``total`` from above."""
    if total <= 0 or expected.max() <= 0:
        return np.zeros_like(expected)
    lo, hi = 0.0, 1.0
    while np.floor(hi * expected + 0.5).sum() < total:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.floor(mid * expected + 0.5).sum() < total:
            lo = mid
        else:
            hi = mid
    return np.floor(hi * expected + 0.5)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pk_summary(k: np.ndarray, ratio: np.ndarray, k_max: float) -> float:
    sel = k < k_max
    return float(np.max(np.abs(ratio[sel] - 1.0))) if sel.any() else float("nan")


def evaluate_dm2gal(grid_files: list[str], splits: dict, classifiers: dict[str, str],
                    regressor: str, hod: dict, settings: dict, seed: int
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics (JSON-ready) and arrays for the figures of every test run."""
    ev = settings["evaluation"]
    runs = load_runs(grid_files)
    reg_model, reg_payload = load_network(regressor)
    metrics: dict[str, Any] = {"splits": {k: splits[k] for k in ("train", "validation", "test",
                                                                 "cross_prediction")},
                               "hod": hod, "classifiers": {}}
    arrays: dict[str, np.ndarray] = {}
    primary = settings["primary_classifier"]
    for arch, path in classifiers.items():
        model, payload = load_network(path)
        val_truth = [runs[r]["galaxy_count"] for r in splits["validation"]]
        val_prob = [_sigmoid(predict_grid(model, payload, runs[r]["dm_density"]))
                    for r in splits["validation"]]
        threshold, how = choose_threshold(val_truth, val_prob, ev["accuracy_goal"])
        per_run, all_t, all_p = {}, [], []
        for run in splits["test"]:
            prob = _sigmoid(predict_grid(model, payload, runs[run]["dm_density"]))
            truth = runs[run]["galaxy_count"]
            per_run[run] = classification_metrics(truth, prob >= threshold)
            all_t.append(truth.ravel() > 0)
            all_p.append(prob.ravel())
            arrays[f"{arch}/{run}/probability"] = prob.astype(np.float32)
        t, p = np.concatenate(all_t), np.concatenate(all_p)
        prec, rec = precision_recall_curve(t, p)
        arrays[f"{arch}/pr_precision"], arrays[f"{arch}/pr_recall"] = prec, rec
        pooled = classification_metrics(t, p >= threshold)
        metrics["classifiers"][arch] = {
            "threshold": threshold, "threshold_rule": how, "test": pooled, "per_run": per_run,
            "average_precision": float(-np.sum(np.diff(rec) * prec[:-1])),
            "best_epoch": payload["best_epoch"]}
    threshold = metrics["classifiers"][primary]["threshold"]
    if ev["count_assignment"] == "calibrated":
        model, payload = load_network(classifiers[primary])
        true_total, pred_total = 0.0, 0.0
        for run in splits["validation"]:
            g = runs[run]
            prob = _sigmoid(predict_grid(model, payload, g["dm_density"]))
            rate = np.exp(predict_grid(reg_model, reg_payload, g["dm_density"]))
            true_total += float(g["galaxy_count"].sum())
            pred_total += float(np.sum(rate[prob >= threshold]))
        calibration = true_total / max(pred_total, 1e-12)
        metrics["count_calibration"] = {
            "validation_true_total": true_total, "validation_predicted_total": pred_total,
            "factor": calibration, "rule": "counts = round(c p rate) on flagged voxels, c such "
            "that the total is factor * sum(rate on flagged voxels)"}
    power: dict[str, Any] = {}
    for run in splits["test"]:
        g = runs[run]
        box, n = g["box_mpc_h"], g["galaxy_count"].shape[0]
        flagged = arrays[f"{primary}/{run}/probability"] >= threshold
        rate = np.exp(predict_grid(reg_model, reg_payload, g["dm_density"]))
        if ev["count_assignment"] == "calibrated":
            prob = arrays[f"{primary}/{run}/probability"].astype(np.float64)
            expected = np.where(flagged, prob * rate, 0.0)
            counts = rounded_to_total(expected, calibration * float(np.sum(rate[flagged])))
        elif ev["count_assignment"] == "poisson":
            counts = np.random.default_rng(derive_seed(seed, "counts", run)).poisson(rate)
        else:
            counts = np.floor(rate + 0.5)
        predicted = np.where(flagged, counts, 0.0).astype(np.float64)
        rng = np.random.default_rng(derive_seed(seed, "hod_mock", run))
        hod_pos = hod_galaxies(g["halo_pos"], halo_mass(g), halo_radius(g), hod, rng, box)
        hod_grid = paint(hod_pos, box, n, mas="NGP")
        truth = g["galaxy_count"]
        pk = {name: power_spectrum(field, box) for name, field in
              (("truth", truth), ("prediction", predicted), ("hod", hod_grid))}
        k = pk["truth"]["k"]
        ratio_pred = pk["prediction"]["pk"] / pk["truth"]["pk"]
        ratio_hod = pk["hod"]["pk"] / pk["truth"]["pk"]
        r_pred = cross_correlation(truth, predicted, box)["r"]
        r_hod = cross_correlation(truth, hod_grid, box)["r"]
        cat_truth = catalog_power_spectrum(g["galaxy_pos"], box, n, "CIC", True)
        cat_hod = catalog_power_spectrum(hod_pos, box, n, "CIC", True)
        power[run] = {
            "k_h_mpc": k.tolist(), "pk_truth": pk["truth"]["pk"].tolist(),
            "pk_prediction": pk["prediction"]["pk"].tolist(), "pk_hod": pk["hod"]["pk"].tolist(),
            "ratio_prediction": ratio_pred.tolist(), "ratio_hod": ratio_hod.tolist(),
            "r_prediction": r_pred.tolist(), "r_hod": r_hod.tolist(),
            "catalog_interlaced_cic": {"k_h_mpc": cat_truth["k"].tolist(),
                                       "pk_truth": cat_truth["pk"].tolist(),
                                       "pk_hod": cat_hod["pk"].tolist(),
                                       "shot_noise_truth": float(cat_truth["shot_noise"][0]),
                                       "shot_noise_hod": float(cat_hod["shot_noise"][0])},
            "max_abs_ratio_minus_1_prediction": _pk_summary(k, ratio_pred, ev["pk_k_max"]),
            "max_abs_ratio_minus_1_hod": _pk_summary(k, ratio_hod, ev["pk_k_max"]),
            "n_galaxies": {"truth": float(truth.sum()), "prediction": float(predicted.sum()),
                           "hod": len(hod_pos)},
            "cross_prediction": run in splits["cross_prediction"],
        }
        arrays[f"fields/{run}/truth"] = truth.astype(np.float32)
        arrays[f"fields/{run}/prediction"] = predicted.astype(np.float32)
        arrays[f"fields/{run}/hod"] = hod_grid.astype(np.float32)
        arrays[f"fields/{run}/dm_density"] = g["dm_density"].astype(np.float32)
    metrics["power_spectra"] = power
    metrics["goals"] = goals(metrics, settings)
    return metrics, arrays


def goals(metrics: dict, settings: dict) -> dict[str, Any]:
    """The work's goals on the held-out runs, met or missed and by how much."""
    ev = settings["evaluation"]
    primary = metrics["classifiers"][settings["primary_classifier"]]["test"]
    out: dict[str, Any] = {}
    out["phase1_recall"] = {"value": primary["recall"], "goal": f">= {ev['recall_goal']}",
                            "met": primary["recall"] >= ev["recall_goal"],
                            "missed_by": max(0.0, ev["recall_goal"] - primary["recall"])}
    out["phase1_accuracy"] = {"value": primary["accuracy"], "goal": f">= {ev['accuracy_goal']}",
                              "met": primary["accuracy"] >= ev["accuracy_goal"],
                              "missed_by": max(0.0, ev["accuracy_goal"] - primary["accuracy"])}
    worst_pred = max(v["max_abs_ratio_minus_1_prediction"]
                     for v in metrics["power_spectra"].values())
    worst_hod = max(v["max_abs_ratio_minus_1_hod"] for v in metrics["power_spectra"].values())
    tol = ev["pk_tolerance"]
    out["pk_within_tolerance"] = {
        "value": worst_pred, "goal": f"max |P_pred/P_true - 1| < {tol} for k < "
        f"{ev['pk_k_max']} h/Mpc (worst test run)", "met": worst_pred < tol,
        "missed_by": max(0.0, worst_pred - tol)}
    out["pk_closer_than_hod"] = {"value": worst_pred, "hod": worst_hod,
                                 "goal": "prediction closer to the truth than the HOD",
                                 "met": worst_pred < worst_hod,
                                 "missed_by": max(0.0, worst_pred - worst_hod)}
    return out

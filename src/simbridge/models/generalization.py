"""Generalization error against dataset distance (Acquaviva, Lovell & Ishida 2020).

Steps, one workflow stage each:

1. :func:`select_features`: a random forest fitted to log stellar mass on the pooled
   feature-selection galaxies of every training domain ranks the wavelengths; the top
   ``n_features`` are the *ranked* selection of the work. The improvement it proposes is the
   *clustered* selection: the ``n_candidates`` most important wavelengths are clustered by
   correlation (average linkage on 1 - |r|, ``n_clusters`` clusters), one wavelength (the most
   important) is kept per cluster, and each carries its cluster's summed importance as a weight
   in the distance.
2. Distances from the training set of domain i to the test set of domain j, as K x K' matrices:
   the mean Euclidean distance over all pairs (ranked features, as in the work), the same with
   the clustered, importance-weighted features, and the optimal-transport (earth mover's)
   distance between the two sets with a Euclidean ground cost (POT, exact network simplex).
3. One random forest per training domain on its training galaxies (ranked features).
4. Every model applied to the test galaxies of every domain: the error matrix of MSE in
   log10 stellar mass.
5. :func:`fit_error_distance`: error = a + b * distance over all pairs of training domains,
   with a bootstrap over pairs; the predictive interval of a new pair adds a resampled residual.
   Held-out domains (not used in steps 1, 3 and 5) are predicted from their distances and
   compared with their measured errors; real spectra get the prediction alone.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import cdist, squareform
from sklearn.ensemble import RandomForestRegressor

from simbridge.errors import SimBridgeInputError
from simbridge.extract.spectra import SpectraSet, log_flux_features
from simbridge.io import atomic_output
from simbridge.models.training import derive_seed

log = logging.getLogger(__name__)

TARGET = "log10_stellar_mass_msun"
DISTANCE_KINDS = ("mean_euclidean", "weighted_clustered", "optimal_transport")


# --------------------------------------------------------------------------- data

def role_rows(spectra: SpectraSet, role: str) -> NDArray:
    """Row indices of the galaxies of one role in a domain's spectra file."""
    return np.flatnonzero(spectra.galaxies["role"].to_numpy() == role)


def features_and_target(spectra: SpectraSet, role: str | None = None,
                        columns: NDArray | None = None) -> tuple[NDArray, NDArray]:
    """log10-flux features (optionally only ``columns``) and log stellar mass of one role
    (all galaxies when ``role`` is None)."""
    rows = np.arange(len(spectra.flux)) if role is None else role_rows(spectra, role)
    x = log_flux_features(spectra.flux[rows])
    if columns is not None:
        x = x[:, columns]
    y = spectra.galaxies[TARGET].to_numpy(dtype=np.float64)[rows] if TARGET in \
        spectra.galaxies else np.full(len(rows), np.nan)
    return x, y


# --------------------------------------------------------------------------- features

def random_forest(cfg: Mapping[str, Any], seed: int, n_jobs: int = 1) -> RandomForestRegressor:
    """The random forest of a config section (n_estimators, min_samples_leaf, max_features)."""
    return RandomForestRegressor(
        n_estimators=int(cfg["n_estimators"]), min_samples_leaf=int(cfg["min_samples_leaf"]),
        max_features=cfg.get("max_features", "sqrt"), random_state=seed % 2**32, n_jobs=n_jobs)


def cluster_features(x: NDArray, importance: NDArray, candidates: NDArray,
                     n_clusters: int) -> tuple[NDArray, NDArray]:
    """Correlated-feature clustering: (kept columns, weights summing to 1).

    ``candidates`` (columns of ``x``) are grouped into at most ``n_clusters`` clusters by
    average linkage on the distance 1 - |correlation|; each cluster keeps its most important
    column and weighs it by the cluster's summed importance. Log fluxes of one galaxy sample
    all correlate above 0.99 (the luminosity sets them all), so a fixed number of clusters
    separates them where a correlation threshold would not.
    """
    candidates = np.asarray(candidates)
    if len(candidates) == 1 or n_clusters <= 1:
        best = candidates[np.argmax(importance[candidates])]
        return np.array([best]), np.ones(1)
    xc = x[:, candidates]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(xc, rowvar=False)
    dist = np.clip(1.0 - np.abs(np.nan_to_num(corr, nan=0.0)), 0.0, None)
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(linkage(squareform(dist, checks=False), method="average"),
                      t=int(n_clusters), criterion="maxclust")
    kept, weight = [], []
    for lab in np.unique(labels):
        members = candidates[labels == lab]
        kept.append(members[np.argmax(importance[members])])
        weight.append(importance[members].sum())
    order = np.argsort(weight, kind="stable")[::-1]
    kept_arr, w = np.asarray(kept)[order], np.asarray(weight)[order]
    return kept_arr, w / w.sum()


def select_features(sets: Mapping[str, SpectraSet], cfg: Mapping[str, Any], seed: int,
                    n_jobs: int = 1) -> dict[str, Any]:
    """Feature selection on the pooled ``feature_selection`` galaxies of ``sets``."""
    xs, ys, used = [], [], {}
    for name, spectra in sets.items():
        x, y = features_and_target(spectra, "feature_selection")
        xs.append(x)
        ys.append(y)
        used[name] = spectra.galaxies["subhalo_id"].to_numpy()[
            role_rows(spectra, "feature_selection")].tolist()
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) < 10:
        raise SimBridgeInputError(
            f"only {len(y)} feature-selection galaxies over the training domains",
            None, "raise generalization.feature_selection.n_per_domain")
    forest = random_forest(cfg["random_forest"], derive_seed(seed, "feature-selection"), n_jobs)
    forest.fit(x, y)
    importance = forest.feature_importances_
    ranked = np.argsort(importance, kind="stable")[::-1]
    n_features = min(int(cfg["n_features"]), x.shape[1])
    candidates = ranked[: max(n_features, min(int(cfg["n_candidates"]), x.shape[1]))]
    clustered, weights = cluster_features(x, importance, candidates, int(cfg["n_clusters"]))
    wave = next(iter(sets.values())).wavelength_angstrom
    return {
        "ranked": ranked[:n_features].tolist(),
        "ranked_wavelength_angstrom": wave[ranked[:n_features]].tolist(),
        "ranked_importance": importance[ranked[:n_features]].tolist(),
        "clustered": clustered.tolist(),
        "clustered_wavelength_angstrom": wave[clustered].tolist(),
        "clustered_weight": weights.tolist(),
        "n_clusters": int(len(clustered)),
        "n_pooled_galaxies": int(len(y)),
        "feature_selection_subhalo_ids": used,
        "importance": importance.tolist(),
        "domains": list(sets),
    }


# --------------------------------------------------------------------------- distances

def mean_euclidean_distance(a: NDArray, b: NDArray, weights: NDArray | None = None,
                            block: int = 2048) -> float:
    """Mean over all pairs (a_i, b_j) of sqrt(sum_k w_k (a_ik - b_jk)^2) (w = 1 by default)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if weights is not None:
        s = np.sqrt(np.asarray(weights, dtype=np.float64))
        a, b = a * s, b * s
    total = 0.0
    for i in range(0, len(a), block):
        total += cdist(a[i:i + block], b).sum()
    return float(total / (len(a) * len(b)))


def optimal_transport_distance(a: NDArray, b: NDArray, max_points: int,
                               rng: np.random.Generator) -> float:
    """Earth mover's distance (W1) between the empirical sets, Euclidean ground cost (POT).

    Sets larger than ``max_points`` are subsampled (seeded) to keep the exact solver cheap.
    """
    import ot

    if len(a) > max_points:
        a = a[rng.choice(len(a), max_points, replace=False)]
    if len(b) > max_points:
        b = b[rng.choice(len(b), max_points, replace=False)]
    cost = ot.dist(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                   metric="euclidean")
    return float(ot.emd2(np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b)), cost,
                         numItermax=1_000_000))


def distance_matrices(sources: Mapping[str, SpectraSet], targets: Mapping[str, SpectraSet],
                      features: Mapping[str, Any], cfg: Mapping[str, Any], seed: int,
                      target_role: str | None = "test") -> dict[str, NDArray]:
    """(len(sources), len(targets)) matrices of every distance kind, from the training set of
    each source to the ``target_role`` galaxies of each target (all of them when None)."""
    ranked, clustered = np.asarray(features["ranked"]), np.asarray(features["clustered"])
    weights = np.asarray(features["clustered_weight"])
    out = {k: np.zeros((len(sources), len(targets))) for k in DISTANCE_KINDS}
    tgt = {n: features_and_target(s, target_role)[0] for n, s in targets.items()}
    for i, (si, s) in enumerate(sources.items()):
        xs = features_and_target(s, "train")[0]
        for j, (tj, xt) in enumerate(tgt.items()):
            out["mean_euclidean"][i, j] = mean_euclidean_distance(xs[:, ranked], xt[:, ranked])
            out["weighted_clustered"][i, j] = mean_euclidean_distance(
                xs[:, clustered], xt[:, clustered], weights)
            rng = np.random.default_rng(derive_seed(seed, "ot", si, tj))
            out["optimal_transport"][i, j] = optimal_transport_distance(
                xs[:, ranked], xt[:, ranked], int(cfg["max_points_per_set"]), rng)
    return out


# --------------------------------------------------------------------------- models

def train_domain_model(spectra: SpectraSet, features: Mapping[str, Any], cfg: Mapping[str, Any],
                       seed: int, n_jobs: int = 1) -> dict[str, Any]:
    """Random forest of one domain on its training galaxies (ranked features)."""
    columns = np.asarray(features["ranked"])
    x, y = features_and_target(spectra, "train", columns)
    forest = random_forest(cfg, derive_seed(seed, "domain-model", spectra.name), n_jobs)
    forest.fit(x, y)
    return {"kind": "random_forest", "domain": spectra.name, "columns": columns,
            "wavelength_angstrom": spectra.wavelength_angstrom, "model": forest,
            "n_train": int(len(y))}


def save_model(payload: dict[str, Any], path: str | Path) -> None:
    """Pickle a model payload (scikit-learn estimators pickle) under a temporary name."""
    with atomic_output(path) as tmp, tmp.open("wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_model(path: str | Path) -> dict[str, Any]:
    """Read a model payload: a pickled random forest (.pkl) or a CNN's torch payload (.pt)."""
    path = Path(path)
    if not path.is_file():
        raise SimBridgeInputError("domain model is missing", path, "rerun its training rule")
    if path.suffix == ".pt":
        import torch

        return torch.load(path, map_location="cpu", weights_only=False)
    with path.open("rb") as fh:
        return pickle.load(fh)


def predict(payload: Mapping[str, Any], spectra: SpectraSet, role: str | None = "test"
            ) -> tuple[NDArray, NDArray]:
    """(predicted, true) log stellar mass of a model (either kind) on one role of a domain."""
    if not np.allclose(spectra.wavelength_angstrom, payload["wavelength_angstrom"]):
        raise SimBridgeInputError("spectra and model have different wavelength grids",
                                  spectra.path, "rerun the spectra and models with one config")
    if payload["kind"] == "cnn":
        from simbridge.models.spectrum_cnn import predict_cnn

        return predict_cnn(payload, spectra, role)
    x, y = features_and_target(spectra, role, np.asarray(payload["columns"]))
    return payload["model"].predict(x), y


def mse(pred: NDArray, true: NDArray) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(pred) - np.asarray(true)) ** 2))


# --------------------------------------------------------------------------- regression

def _ols(d: NDArray, e: NDArray) -> tuple[float, float]:
    """Least-squares intercept and slope of e against d (slope 0 when d is constant)."""
    dm, em = d.mean(), e.mean()
    var = ((d - dm) ** 2).sum()
    slope = float(((d - dm) * (e - em)).sum() / var) if var > 0 else 0.0
    return float(em - slope * dm), slope


def fit_error_distance(distance: NDArray, error: NDArray, n_bootstrap: int, level: float,
                       seed: int) -> dict[str, Any]:
    """Linear fit error = a + b * distance with a bootstrap over pairs.

    Returns the fit, its bootstrap intervals and the bootstrap replicas (intercepts, slopes
    and residual pools) that :func:`predict_error` draws from.
    """
    d, e = np.asarray(distance, dtype=np.float64), np.asarray(error, dtype=np.float64)
    if len(d) < 3:
        raise SimBridgeInputError(f"only {len(d)} (domain, domain) pairs to fit", None,
                                  "use at least two training domains")
    rng = np.random.default_rng(derive_seed(seed, "error-distance-bootstrap"))
    a, b = _ols(d, e)
    idx = rng.integers(0, len(d), (int(n_bootstrap), len(d)))
    reps = np.array([_ols(d[k], e[k]) for k in idx])
    residuals = np.array([e[k] - (r[0] + r[1] * d[k]) for k, r in zip(idx, reps, strict=True)])
    q = [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0]
    resid = e - (a + b * d)
    ss_tot = ((e - e.mean()) ** 2).sum()
    return {
        "intercept": a, "slope": b,
        "intercept_interval": np.quantile(reps[:, 0], q).tolist(),
        "slope_interval": np.quantile(reps[:, 1], q).tolist(),
        "residual_std": float(resid.std(ddof=2)) if len(d) > 2 else float("nan"),
        "r2": float(1.0 - (resid**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "pearson_r": float(np.corrcoef(d, e)[0, 1]) if d.std() > 0 and e.std() > 0 else
        float("nan"),
        "n_pairs": int(len(d)), "level": float(level), "n_bootstrap": int(n_bootstrap),
        "_replicas": reps, "_residuals": residuals,
    }


def predict_error(fit: Mapping[str, Any], distance: NDArray, seed: int) -> dict[str, NDArray]:
    """Predicted error at ``distance``: central value and the predictive interval (bootstrap
    replica + a residual drawn from that replica's residuals) at the fit's level."""
    d = np.atleast_1d(np.asarray(distance, dtype=np.float64))
    reps, res = fit["_replicas"], fit["_residuals"]
    rng = np.random.default_rng(derive_seed(seed, "error-distance-predict"))
    pick = rng.integers(0, res.shape[1], (len(reps), len(d)))
    draws = reps[:, :1] + reps[:, 1:2] * d[None, :] + np.take_along_axis(res, pick, axis=1)
    level = fit["level"]
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2], axis=0)
    mean_lo, mean_hi = np.quantile(reps[:, :1] + reps[:, 1:2] * d[None, :],
                                   [(1 - level) / 2, 1 - (1 - level) / 2], axis=0)
    return {"predicted": fit["intercept"] + fit["slope"] * d, "lower": lo, "upper": hi,
            "mean_lower": mean_lo, "mean_upper": mean_hi}


def public_fit(fit: Mapping[str, Any]) -> dict[str, Any]:
    """The fit without its bootstrap replicas (for metrics.json)."""
    return {k: v for k, v in fit.items() if not k.startswith("_")}


def pairs(matrix: NDArray, rows: Sequence[str], cols: Sequence[str], keep_cols: Sequence[str]
          ) -> NDArray:
    """Flatten the entries of ``matrix`` (rows x cols) whose column is in ``keep_cols``."""
    j = [cols.index(c) for c in keep_cols]
    return np.asarray(matrix)[:, j].ravel()


# --------------------------------------------------------------------------- workflow stages

def read_domain_sets(paths: Mapping[str, str | Path], wavelength_angstrom: NDArray
                     ) -> dict[str, SpectraSet]:
    """Spectra files of several domains, each checked against the configured grid."""
    from simbridge.extract.spectra import read_spectra_file

    out = {}
    for name, path in paths.items():
        spectra = read_spectra_file(path, wavelength_angstrom)
        spectra.name = name
        out[name] = spectra
    return out


def check_disjoint_roles(sets: Mapping[str, SpectraSet], features: Mapping[str, Any]) -> None:
    """Fail if a feature-selection galaxy of a domain appears with another role there."""
    for name, spectra in sets.items():
        used = set(features["feature_selection_subhalo_ids"].get(name, []))
        later = spectra.galaxies.loc[spectra.galaxies["role"] != "feature_selection",
                                     "subhalo_id"]
        overlap = sorted(used & set(later.tolist()))
        if overlap:
            raise SimBridgeInputError(
                f"domain {name}: feature-selection galaxies {overlap[:5]} also have another role",
                spectra.path, "rerun generalization_catalog and the spectra (roles changed)")


def _jsonable(matrix: NDArray) -> list:
    return np.asarray(matrix, dtype=np.float64).round(8).tolist()


def distances_payload(training: Mapping[str, SpectraSet], targets: Mapping[str, SpectraSet],
                      features: Mapping[str, Any], cfg: Mapping[str, Any], seed: int,
                      observed: SpectraSet | None = None) -> dict[str, Any]:
    """Every distance matrix (training sources x targets) and, in real mode, the distances of
    the observed spectra to each training domain."""
    check_disjoint_roles(targets, features)
    mats = distance_matrices(training, targets, features, cfg, seed)
    out: dict[str, Any] = {"sources": list(training), "targets": list(targets),
                           "source_role": "train", "target_role": "test",
                           "matrices": {k: _jsonable(v) for k, v in mats.items()}}
    if observed is not None:
        obs = distance_matrices(training, {"observed": observed}, features, cfg, seed,
                                target_role=None)
        out["observed"] = {k: _jsonable(v[:, 0]) for k, v in obs.items()}
        out["n_observed"] = int(len(observed.flux))
    return out


def cross_errors(payload: Mapping[str, Any], targets: Mapping[str, SpectraSet]) -> dict[str, Any]:
    """MSE (and bias) of one domain's model on the test galaxies of every target domain."""
    rows = {"mse": [], "bias": [], "n_test": []}
    for spectra in targets.values():
        pred, true = predict(payload, spectra, "test")
        rows["mse"].append(mse(pred, true))
        rows["bias"].append(float(np.mean(pred - true)))
        rows["n_test"].append(int(len(true)))
    return {"model_domain": payload["domain"], "model_kind": payload["kind"],
            "targets": list(targets), "n_train": payload["n_train"], **rows}


def regression_metrics(distances: Mapping[str, Any], errors: Mapping[str, Mapping[str, Any]],
                       holdout: Sequence[str], cfg: Mapping[str, Any], seed: int
                       ) -> dict[str, Any]:
    """Fit error against every distance kind on the training pairs; predict the held-out
    domains (and the observed spectra, in real mode) with intervals; check coverage."""
    sources, targets = list(distances["sources"]), list(distances["targets"])
    error = np.array([[errors[s]["mse"][errors[s]["targets"].index(t)] for t in targets]
                      for s in sources])
    train_targets = [t for t in targets if t not in holdout]
    held = [t for t in targets if t in holdout]
    level = float(cfg["level"])
    fits: dict[str, Any] = {}
    heldout: dict[str, Any] = {}
    observed: dict[str, Any] = {}
    for kind, mat in distances["matrices"].items():
        mat = np.asarray(mat)
        fit = fit_error_distance(pairs(mat, sources, targets, train_targets),
                                 pairs(error, sources, targets, train_targets),
                                 int(cfg["n_bootstrap"]), level, derive_seed(seed, kind))
        fits[kind] = public_fit(fit)
        if held:
            d, e = pairs(mat, sources, targets, held), pairs(error, sources, targets, held)
            p = predict_error(fit, d, derive_seed(seed, kind, "heldout"))
            inside = (e >= p["lower"]) & (e <= p["upper"])
            heldout[kind] = {
                "pairs": [{"model_domain": s, "target": t} for s in sources for t in held],
                "distance": d.tolist(), "measured": e.tolist(),
                "predicted": p["predicted"].tolist(), "lower": p["lower"].tolist(),
                "upper": p["upper"].tolist(), "inside": inside.tolist(),
                "coverage": float(inside.mean()),
                "mean_abs_error_of_prediction": float(np.mean(np.abs(p["predicted"] - e))),
            }
        if "observed" in distances:
            d = np.asarray(distances["observed"][kind])
            p = predict_error(fit, d, derive_seed(seed, kind, "observed"))
            observed[kind] = {"model_domains": sources, "distance": d.tolist(),
                              **{k: v.tolist() for k, v in p.items()}}
    primary = cfg["distance"]
    out: dict[str, Any] = {
        "sources": sources, "targets": targets, "holdout_domains": held,
        "error_matrix_mse_log10_mstar": _jsonable(error),
        "bias_matrix_log10_mstar": _jsonable(np.array(
            [[errors[s]["bias"][errors[s]["targets"].index(t)] for t in targets]
             for s in sources])),
        "distances": distances["matrices"], "fits": fits, "heldout": heldout,
        "primary_distance": primary, "level": level,
        "checks": {"heldout_within_interval": bool(heldout[primary]["coverage"] == 1.0)
                   if heldout else None,
                   "heldout_coverage": heldout[primary]["coverage"] if heldout else None},
    }
    if observed:
        out["observed"] = observed
        out["n_observed"] = distances.get("n_observed")
    return out


def study_metrics(distances: Mapping[str, Any],
                  errors: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  holdout: Sequence[str], cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """metrics.json: the regression of every model kind (``errors[kind][domain]``)."""
    models = {kind: regression_metrics(distances, errs, holdout, cfg, derive_seed(seed, kind))
              for kind, errs in errors.items()}
    return {"model_kinds": list(models), "models": models,
            "distances": distances["matrices"], "sources": distances["sources"],
            "targets": distances["targets"], "holdout_domains": list(holdout),
            "primary_distance": cfg["distance"], "level": float(cfg["level"]),
            "checks": {kind: m["checks"] for kind, m in models.items()}}

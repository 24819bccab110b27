"""Expected error of the ex-situ map model on another simulation: error against distance.

The generalization study (:mod:`simbridge.models.generalization`) carried over to the ex-situ
map model of the TNG branch, as the generalization work proposes for future steps:

1. Map datasets are extracted, with the TNG branch's own extraction code and map settings, from
   *transfer universes* (``generalization.exsitu_transfer.universes``): demo universes built
   like the TNG branch's, with another seed and the universe's overrides (another star particle
   mass, younger or metal-poorer stars, ...), or real archives.
2. A trained model (cVAE + flow) is applied to every sample of the TNG branch's test split and
   of every transfer universe: per sample, the summed absolute residual of the flow-mode
   posterior mean (mean map, as :mod:`simbridge.models.evaluation` defines it) over galaxy
   pixels, and its *map features*: the model's standardized condition channels (its
   ConditionNormalizer) averaged over ``feature_pool`` x ``feature_pool`` blocks of the map, and
   the galaxy-pixel fraction of each block, and per channel the mean |difference| of
   neighbouring galaxy pixels (small-scale noise, which grows with the star particle mass). The
   work's features are fluxes; these are the condition maps' content in the units the model
   sees.
3. Feature weights, the work's proposed improvement: a random forest fitted on the training
   split to each sample's mean ex-situ fraction ranks the features; the weighted distances scale
   each standardized feature by the square root of its importance (times the feature count).
4. Target sets: the in-domain test split (its first ``views_per_galaxy`` views of every
   galaxy, like the universes: the balanced split over-represents ex-situ-rich galaxies, whose
   maps are easier), and *mixtures* holding a fraction f of one transfer
   universe's samples and 1 - f of the test split, for every fraction of ``mixing_fractions``
   (a graded series of domain shifts; f = 1 is the universe alone).
5. Distances of each set to the training split: importance-weighted optimal transport (POT,
   exact, Euclidean ground cost; the primary), unweighted optimal transport, and the work's mean
   Euclidean distance. Error of a set: mean |residual| per galaxy pixel (pixel-weighted, the
   evaluation's ``mean_abs_residual``).
6. error = a + b * distance fitted with a bootstrap
   (:func:`simbridge.models.generalization.fit_error_distance`). Leave one universe out: for
   every transfer universe, the fit on all other sets predicts that universe alone (f = 1),
   with its predictive interval, against its measured error; the fit on every set is the one
   :func:`expected_error` uses.

:func:`expected_error` gives the same prediction for any file of condition maps (another
simulation, or observed maps in the split-file layout), from its distance alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.io import atomic_output, write_json_atomic
from simbridge.models.exsitu import TrainedModel, load_trained_model, posterior_draws
from simbridge.models.generalization import (
    fit_error_distance,
    mean_euclidean_distance,
    optimal_transport_distance,
    predict_error,
    public_fit,
    random_forest,
)
from simbridge.models.inference import check_inference_file, expected_channels, read_inputs
from simbridge.models.training import autocast, derive_seed, select_device

log = logging.getLogger(__name__)

DISTANCE_KINDS = ("weighted_optimal_transport", "optimal_transport", "mean_euclidean")
IN_DOMAIN = "in_domain_test"
ERROR_DEFINITION = ("mean |flow-mode posterior mean (mean map) - true ex-situ fraction| per "
                    "galaxy pixel, pixel-weighted over the set")
PER_SAMPLE = ("abs_residual_sum", "n_galaxy_pixels", "features", "mean_exsitu_fraction")


# --------------------------------------------------------------------------- per sample

def map_features(trained: TrainedModel, cond: torch.Tensor, mask: torch.Tensor, pool: int
                 ) -> torch.Tensor:
    """(B, 6 pool^2 + 5) map features: the standardized condition channels averaged over
    pool x pool blocks (zero outside the galaxy), the galaxy-pixel fraction of every block,
    and per channel the mean |difference| of neighbouring galaxy pixels (the maps' small-scale
    noise, which grows with the star particle mass)."""
    npix = cond.shape[-1]
    if npix % pool:
        raise SimBridgeInputError(f"feature_pool {pool} does not divide the map size {npix}",
                                  None, "set generalization.exsitu_transfer.feature_pool to a "
                                  "divisor of maps.npix")
    x = trained.cvae.condition(cond, mask)[:, :5].float() * mask
    k = npix // pool
    pairs_x = mask[..., 1:] * mask[..., :-1]
    pairs_y = mask[..., 1:, :] * mask[..., :-1, :]
    rough = (((x[..., 1:] - x[..., :-1]).abs() * pairs_x).flatten(2).sum(2)
             + ((x[..., 1:, :] - x[..., :-1, :]).abs() * pairs_y).flatten(2).sum(2))
    rough = rough / (pairs_x.flatten(1).sum(1) + pairs_y.flatten(1).sum(1)).clamp_min(1)[:, None]
    return torch.cat([F.avg_pool2d(x, k).flatten(1), F.avg_pool2d(mask, k).flatten(1), rough],
                     1)


def transfer_universe_params(demo_cfg: Mapping[str, Any], universe: Mapping[str, Any],
                             snapshot: int) -> dict[str, Any]:
    """Demo-universe parameters of a transfer universe: the TNG branch's demo universe, one
    snapshot, no trees, with the universe's overrides (its galaxy physics or resolution)."""
    redshift = next((s["redshift"] for s in demo_cfg["snapshots"]
                     if int(s["snapshot"]) == int(snapshot)), None)
    if redshift is None:
        raise SimBridgeConfigError(
            f"generalization.exsitu_transfer.snapshot {snapshot} is not a snapshot of "
            "demo_universe.snapshots", None)
    return {**demo_cfg, "snapshots": [{"snapshot": int(snapshot), "redshift": redshift}],
            "merger_trees": False, **universe.get("demo", {})}


@torch.no_grad()
def apply_to_maps(trained: TrainedModel, maps_h5: str | Path, n_draws: int | None, pool: int,
                  seed: int, device: torch.device, batch_size: int = 16) -> dict[str, NDArray]:
    """Per sample of a file of condition maps: its map features, and with ``n_draws`` (and a
    true map in the file) the summed |posterior mean - truth| over galaxy pixels, the number
    of galaxy pixels and the true map's mean ex-situ fraction."""
    torch.manual_seed(derive_seed(seed, "exsitu-transfer", Path(maps_h5).name))
    out: dict[str, list] = {k: [] for k in PER_SAMPLE}
    cvae, flow = trained.cvae, trained.flow
    with h5py.File(maps_h5, "r") as h5:
        n = h5["conditions"].shape[0]
        with_truth = n_draws is not None
        if with_truth and "exsitu_fraction_map" not in h5:
            raise SimBridgeInputError("the file holds no exsitu_fraction_map to measure the "
                                      "error against", maps_h5, "extract it with the workflow")
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            cond, mask = read_inputs(h5, start, stop)
            cond, mask = cond.to(device), mask.to(device)
            with autocast(device):
                out["features"].append(map_features(trained, cond, mask, pool).cpu().numpy())
                if not with_truth:
                    continue
                draws = posterior_draws(cvae, flow, cond, mask, None, "flow", n_draws,
                                        concentration_scale=trained.concentration_scale)
            target = torch.from_numpy(h5["exsitu_fraction_map"][start:stop]).to(device)
            m = mask[:, 0]
            res = ((draws.float().mean(0) - target).abs() * m).flatten(1).sum(1)
            pixels = m.flatten(1).sum(1)
            out["abs_residual_sum"].append(res.cpu().numpy())
            out["n_galaxy_pixels"].append(pixels.cpu().numpy())
            out["mean_exsitu_fraction"].append(
                ((target * m).flatten(1).sum(1) / pixels.clamp_min(1)).cpu().numpy())
    return {k: np.concatenate(v).astype(np.float64) for k, v in out.items() if v}


def write_applied(path: str | Path, applied: Mapping[str, NDArray], source: str) -> None:
    """Per-sample results of :func:`apply_to_maps` as HDF5 (temporary name, then renamed)."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        for key, value in applied.items():
            h5.create_dataset(key, data=value, track_times=False)
        h5.attrs["source"] = source
        if "abs_residual_sum" in h5:
            h5["abs_residual_sum"].attrs["units"] = "ex-situ fraction x galaxy pixels"


def read_applied(path: str | Path) -> dict[str, NDArray]:
    """Read a file of :func:`write_applied`."""
    with h5py.File(path, "r") as h5:
        return {k: h5[k][:] for k in PER_SAMPLE if k in h5}


# --------------------------------------------------------------------------- sets

def set_error(applied: Mapping[str, NDArray], idx: NDArray | None = None) -> float:
    """Mean |residual| per galaxy pixel of the samples ``idx`` (all: None), pixel-weighted."""
    sel = slice(None) if idx is None else idx
    pixels = applied["n_galaxy_pixels"][sel].sum()
    return float(applied["abs_residual_sum"][sel].sum() / pixels) if pixels > 0 else float("nan")


def transfer_sets(sizes: Mapping[str, int], fractions: Sequence[float], seed: int
                  ) -> list[dict[str, Any]]:
    """The target sets: the in-domain test split, and mixtures of each transfer universe with
    it at every fraction (f = 1: the universe alone, all its samples).

    ``sizes``: samples per source (``IN_DOMAIN`` and every universe). The mixtures of one
    universe with f < 1 have one size (the smaller source), so only f changes along a series.
    Returns dicts with name, universe, fraction and ``indices`` (source -> sample indices,
    seeded, without repetition).
    """
    n_test = int(sizes[IN_DOMAIN])
    if n_test < 2:
        raise SimBridgeInputError(f"the test split holds {n_test} samples", None,
                                  "build a larger dataset before the transfer study")
    sets = [{"name": IN_DOMAIN, "universe": IN_DOMAIN, "fraction": 0.0,
             "indices": {IN_DOMAIN: np.arange(n_test)}}]
    for universe, n_u in sizes.items():
        if universe == IN_DOMAIN:
            continue
        if n_u < 2:
            raise SimBridgeInputError(
                f"transfer universe {universe!r} gave {n_u} usable samples", None,
                "lower tng.stellar_mass_min_msun or use a larger universe")
        size = min(n_test, n_u)
        for f in sorted({float(f) for f in fractions} | {1.0}):
            if f >= 1.0:
                idx = {universe: np.arange(n_u)}
            else:
                rng = np.random.default_rng(derive_seed(seed, "transfer-mixture", universe, f))
                k = int(round(f * size))
                idx = {universe: np.sort(rng.choice(n_u, k, replace=False)),
                       IN_DOMAIN: np.sort(rng.choice(n_test, size - k, replace=False))}
            sets.append({"name": f"{universe}_f{f:g}", "universe": universe, "fraction": f,
                         "indices": idx})
    return sets


class FeatureSpace:
    """The training split's map features, standardized and importance-weighted: the reference
    every set's distance is measured from."""

    def __init__(self, train: Mapping[str, NDArray], cfg: Mapping[str, Any], seed: int):
        x = np.asarray(train["features"], dtype=np.float64)
        self.mean = x.mean(0)
        self.scale = np.where(x.std(0) > 0, x.std(0), 1.0)
        z = self.standardize(x)
        forest = random_forest(cfg["random_forest"], derive_seed(seed, "transfer-importance"))
        forest.fit(z, train["mean_exsitu_fraction"])
        self.importance = forest.feature_importances_
        self.weight = np.sqrt(self.importance * len(self.importance))
        self.max_points = int(cfg["max_points_per_set"])
        rng = np.random.default_rng(derive_seed(seed, "transfer-reference"))
        self.reference = z[rng.choice(len(z), self.max_points, replace=False)] \
            if len(z) > self.max_points else z
        self.seed = int(seed)

    def standardize(self, features: NDArray) -> NDArray:
        return (np.asarray(features, dtype=np.float64) - self.mean) / self.scale

    def distances(self, features: NDArray, name: str) -> dict[str, float]:
        """Every distance kind from the training split to the set of ``features``."""
        z = self.standardize(features)
        rng = np.random.default_rng(derive_seed(self.seed, "transfer-ot", name))
        weighted = optimal_transport_distance(self.reference * self.weight, z * self.weight,
                                              self.max_points, rng)
        rng = np.random.default_rng(derive_seed(self.seed, "transfer-ot", name))
        return {"weighted_optimal_transport": weighted,
                "optimal_transport": optimal_transport_distance(self.reference, z,
                                                                self.max_points, rng),
                "mean_euclidean": mean_euclidean_distance(self.reference, z)}


def _gather(applied: Mapping[str, Mapping[str, NDArray]], indices: Mapping[str, NDArray]
            ) -> dict[str, NDArray]:
    """The samples of a set, concatenated over its sources."""
    keys = set.intersection(*(set(applied[src]) for src in indices))
    return {k: np.concatenate([applied[src][k][idx] for src, idx in indices.items()])
            for k in keys}


# --------------------------------------------------------------------------- the study

def _fit(rows: Sequence[Mapping[str, Any]], kind: str, cfg: Mapping[str, Any], seed: int,
         tag: str = "all") -> dict[str, Any]:
    """The bootstrap fit of error against one distance kind over ``rows``, reproducible from
    the rows and the seed (:func:`expected_error` refits it from metrics.json)."""
    d = np.array([r["distance"][kind] for r in rows])
    e = np.array([r["error"] for r in rows])
    return fit_error_distance(d, e, int(cfg["n_bootstrap"]), float(cfg["level"]),
                              derive_seed(seed, "transfer-fit", kind, tag))


def transfer_study(applied: Mapping[str, Mapping[str, NDArray]], train: Mapping[str, NDArray],
                   cfg: Mapping[str, Any], seed: int, model: str) -> dict[str, Any]:
    """metrics of one model: every set's distances and error, the fit of error against each
    distance kind on all sets, and leave-one-universe-out predictions with intervals."""
    sizes = {k: len(v["abs_residual_sum"]) for k, v in applied.items()}
    space = FeatureSpace(train, cfg, seed)
    rows = []
    for s in transfer_sets(sizes, cfg["mixing_fractions"], seed):
        samples = _gather(applied, s["indices"])
        rows.append({"name": s["name"], "universe": s["universe"], "fraction": s["fraction"],
                     "n_samples": int(len(samples["abs_residual_sum"])),
                     "error": set_error(samples),
                     "distance": space.distances(samples["features"], s["name"])})
    universes = [u for u in applied if u != IN_DOMAIN]
    fits, loo = {}, {}
    for kind in DISTANCE_KINDS:
        fits[kind] = public_fit(_fit(rows, kind, cfg, seed))
        if len(universes) < 2:
            continue
        entries = []
        for u in universes:
            fit = _fit([r for r in rows if r["universe"] != u], kind, cfg, seed, u)
            target = next(r for r in rows if r["universe"] == u and r["fraction"] == 1.0)
            p = predict_error(fit, np.array([target["distance"][kind]]),
                              derive_seed(seed, "transfer-loo", kind, u))
            e = target["error"]
            entries.append({"universe": u, "distance": target["distance"][kind],
                            "measured": e, "predicted": float(p["predicted"][0]),
                            "lower": float(p["lower"][0]), "upper": float(p["upper"][0]),
                            "inside": bool(p["lower"][0] <= e <= p["upper"][0]),
                            "relative_error_of_prediction":
                                float(abs(p["predicted"][0] - e) / e)})
        loo[kind] = {"universes": entries,
                     "coverage": float(np.mean([x["inside"] for x in entries])),
                     "median_relative_error": float(np.median(
                         [x["relative_error_of_prediction"] for x in entries]))}
    primary = cfg["distance"]
    return {
        "model": model, "error_definition": ERROR_DEFINITION,
        "error_units": "ex-situ stellar mass fraction per galaxy pixel",
        "feature_space": (f"standardized condition channels and galaxy fraction averaged over "
                          f"{cfg['feature_pool']}x{cfg['feature_pool']} blocks, and the mean "
                          "|difference| of neighbouring galaxy pixels per channel; weighted "
                          "kinds scale each by sqrt(importance x n_features)"),
        "feature_importance": space.importance.tolist(),
        "sets": rows, "fits": fits, "leave_one_universe_out": loo, "primary_distance": primary,
        "level": float(cfg["level"]), "in_domain_error": rows[0]["error"],
        "checks": {
            "leave_one_out_within_interval":
                bool(all(x["inside"] for x in loo[primary]["universes"])) if loo else None,
            "leave_one_out_coverage": loo[primary]["coverage"] if loo else None,
            "error_grows_with_distance": bool(fits[primary]["slope"] > 0)},
    }


def run_transfer_study(cvae_path: str | Path, flow_path: str | Path, train_h5: str | Path,
                       test_h5: str | Path, universe_maps: Mapping[str, str | Path],
                       cfg: Mapping[str, Any], seed: int, model: str, out_json: str | Path,
                       out_applied_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """Apply the model to the test split and every transfer universe's maps, run the study and
    write metrics (JSON) and the per-sample results (one HDF5 per source)."""
    dev = select_device(device)
    trained = load_trained_model(cvae_path, flow_path, dev)
    n_draws, pool = int(cfg["n_draws"]), int(cfg["feature_pool"])
    sources = {IN_DOMAIN: test_h5, **universe_maps}
    applied = {}
    for name, path in sources.items():
        log.info("%s: applying the model to %s (%d flow draws per sample)", model, name, n_draws)
        applied[name] = apply_to_maps(trained, path, n_draws, pool, seed, dev)
        write_applied(Path(out_applied_dir) / f"{name}.h5", applied[name], str(path))
    # The test split is balanced (more views of ex-situ-rich galaxies, whose maps are easier);
    # the universes have views_per_galaxy views of every galaxy: compare like with like.
    balanced_error = set_error(applied[IN_DOMAIN])
    with h5py.File(test_h5, "r") as h5:
        natural = np.flatnonzero(h5["view_index"][:] < int(cfg["views_per_galaxy"]))
    applied[IN_DOMAIN] = {k: v[natural] for k, v in applied[IN_DOMAIN].items()}
    train = apply_to_maps(trained, train_h5, None, pool, seed, dev)
    train["mean_exsitu_fraction"] = _mean_fraction(train_h5)
    metrics = transfer_study(applied, train, cfg, seed, model)
    metrics["in_domain_error_balanced_test_split"] = balanced_error
    metrics["in_domain_note"] = (
        f"in_domain_test holds the first {cfg['views_per_galaxy']} views of every test galaxy "
        "(as the universes); in_domain_error_balanced_test_split is the error over every view "
        "of the balanced test split (the evaluation's)")
    metrics["inputs"] = {"cvae": str(cvae_path), "flow": str(flow_path),
                         "training_split": str(train_h5),
                         "sources": {k: str(v) for k, v in sources.items()}}
    metrics["settings"] = dict(cfg)
    metrics["seed"] = int(seed)
    write_json_atomic(out_json, metrics)
    for r in metrics["sets"]:
        log.info("%-22s distance %.3f, error %.4f", r["name"], r["distance"][cfg["distance"]],
                 r["error"])
    return metrics


def _mean_fraction(path: str | Path, block: int = 256) -> NDArray:
    """Mean true ex-situ fraction over the galaxy pixels of every sample of a split file."""
    out = []
    with h5py.File(path, "r") as h5:
        n = h5["exsitu_fraction_map"].shape[0]
        for s in range(0, n, block):
            y = h5["exsitu_fraction_map"][s:s + block].astype(np.float64)
            m = h5["galaxy_mask"][s:s + block].astype(bool)
            out.append((y * m).sum((1, 2)) / np.maximum(m.sum((1, 2)), 1))
    return np.concatenate(out)


# --------------------------------------------------------------------------- for users

def expected_error(study: Mapping[str, Any], train: Mapping[str, NDArray], features: NDArray,
                   name: str) -> dict[str, Any]:
    """Expected mean |residual| per galaxy pixel on a set of galaxies from its distance to the
    training split (the study's fit on all its sets, refitted from them with its seed)."""
    cfg, seed = study["settings"], int(study["seed"])
    space = FeatureSpace(train, cfg, seed)
    dist = space.distances(features, name)
    kind = study["primary_distance"]
    fit = _fit(study["sets"], kind, cfg, seed)
    p = predict_error(fit, np.array([dist[kind]]), derive_seed(seed, "expected", name))
    beyond = dist[kind] > max(r["distance"][kind] for r in study["sets"])
    return {"name": name, "n_samples": int(len(features)), "distance": dist,
            "primary_distance": kind,
            "expected_mean_abs_residual_per_pixel": float(p["predicted"][0]),
            "interval": [float(p["lower"][0]), float(p["upper"][0])],
            "level": float(cfg["level"]), "error_definition": ERROR_DEFINITION,
            "in_domain_error": study["in_domain_error"], "extrapolated": bool(beyond),
            "note": ("the distance lies beyond every set the fit saw: the linear relation is "
                     "extrapolated") if beyond else ""}


def write_expected_error(cvae_path: str | Path, flow_path: str | Path, train_h5: str | Path,
                         study_json: str | Path, input_h5: str | Path, out_json: str | Path,
                         device: str = "auto") -> dict[str, Any]:
    """:func:`expected_error` for one inference input file, written as JSON."""
    dev = select_device(device)
    trained = load_trained_model(cvae_path, flow_path, dev)
    study = json.loads(Path(study_json).read_text())
    channels, units = expected_channels(train_h5)
    check_inference_file(input_h5, trained.cvae.arch.npix, channels, units, study["model"])
    pool, seed = int(study["settings"]["feature_pool"]), int(study["seed"])
    train = apply_to_maps(trained, train_h5, None, pool, seed, dev)
    train["mean_exsitu_fraction"] = _mean_fraction(train_h5)
    target = apply_to_maps(trained, input_h5, None, pool, seed, dev)
    result = expected_error(study, train, target["features"], Path(input_h5).stem)
    result["input_file"] = str(input_h5)
    result["model"] = study["model"]
    write_json_atomic(out_json, result)
    log.info("%s: expected mean |residual| per pixel %.3f (%.0f%% interval %.3f-%.3f)%s",
             Path(input_h5).name, result["expected_mean_abs_residual_per_pixel"],
             100 * result["level"], *result["interval"],
             " (extrapolated)" if result["extrapolated"] else "")
    return result


# --------------------------------------------------------------------------- extraction

def extract_universe_maps(base_path: str | Path, snapshot: int, config: Mapping[str, Any],
                          views_per_galaxy: int, catalog_csv: str | Path, out_h5: str | Path,
                          out_csv: str | Path, name: str, progress: bool = True) -> int:
    """Maps of every galaxy of one transfer universe, with the TNG branch's selection, map
    settings and extraction (one batch, ``views_per_galaxy`` seeded lines of sight each).
    Returns the number of samples; a universe without any usable galaxy is an error."""
    import copy

    from simbridge.extract.tng_maps import extract_batch, write_galaxy_catalog

    cfg = copy.deepcopy(dict(config))
    cfg["tng"] = {**cfg["tng"], "n_batches": 1, "simulation_name": name}
    cfg["balancing"] = {**cfg["balancing"], "min_views": int(views_per_galaxy)}
    write_galaxy_catalog(base_path, snapshot, cfg["tng"], catalog_csv)
    manifest = extract_batch(base_path, snapshot, catalog_csv, 0, cfg, out_h5, out_csv,
                             plan_csv=None, progress=progress)
    n = int(manifest["n_views"].sum())
    if n == 0:
        raise SimBridgeInputError(
            f"no galaxy of transfer universe {name!r} could be mapped (reasons in {out_csv})",
            base_path, "lower maps.min_star_particles or tng.stellar_mass_min_msun, or drop "
            "the universe from generalization.exsitu_transfer.universes")
    log.info("transfer universe %s: %d galaxies mapped, %d skipped", name,
             int((manifest["status"] == "extracted").sum()),
             int((manifest["status"] == "skipped").sum()))
    return n

"""Galaxy catalogs and roles of the generalization branch's simulated domains.

A *universe* is one TNG-layout simulation (a demo-universe variant or a real archive); a
*domain* is a universe rendered under one set of spectral-modelling choices, so several domains
may hold the same galaxies. Roles are drawn once per universe, by galaxy identity, and shared by
all its domains: ``feature_selection`` galaxies serve only the feature selection and are excluded
from everything after; models train on ``train`` galaxies and every error is measured on ``test``
galaxies, so a model is never scored on a galaxy it saw, under any spectral modelling.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract.tng_maps import select_galaxies
from simbridge.io import atomic_output, read_table
from simbridge.models.training import derive_seed
from simbridge.sims import tng
from simbridge.sims.tng_demo import _check_demo_params

log = logging.getLogger(__name__)

ROLES = ("feature_selection", "train", "test")
CATALOG_COLUMNS = ["universe", "snapshot", "subhalo_id", "status", "reason", "role",
                   "stellar_mass_msun", "sfr_msun_yr", "n_part4", "offset_part4"]


def assign_roles(n: int, n_feature_selection: int, train_fraction: float, seed: int,
                 universe: str) -> np.ndarray:
    """Role of each of ``n`` galaxies: a seeded permutation, the first ``n_feature_selection``
    to feature selection, then ``train_fraction`` of the rest to training, the rest to test."""
    rng = np.random.default_rng(derive_seed(seed, "generalization-roles", universe))
    order = rng.permutation(n)
    roles = np.empty(n, dtype=object)
    n_fs = min(int(n_feature_selection), n)
    n_train = int(round(float(train_fraction) * (n - n_fs)))
    roles[order[:n_fs]] = "feature_selection"
    roles[order[n_fs:n_fs + n_train]] = "train"
    roles[order[n_fs + n_train:]] = "test"
    return roles


def write_universe_catalog(
    base_path: str | Path, universe: str, snapshot: int, settings: dict[str, Any], seed: int,
    out_csv: str | Path,
) -> pd.DataFrame:
    """Select the galaxies of one universe, assign their roles and write the catalog CSV.

    ``settings``: stellar_mass_min_msun, feature_selection_per_domain, train_fraction.
    """
    df = select_galaxies(base_path, snapshot, float(settings["stellar_mass_min_msun"]))
    sfr = tng.read_subhalo_catalog(base_path, snapshot, ["SubhaloSFR"])["SubhaloSFR"]
    df["sfr_msun_yr"] = np.asarray(sfr, dtype=np.float64)[df["subhalo_id"].to_numpy()]
    bad_sfr = ~np.isfinite(df["sfr_msun_yr"].to_numpy())
    df.loc[bad_sfr & (df["status"] == "selected"), "reason"] = "non-finite SubhaloSFR"
    df.loc[bad_sfr, "status"] = "skipped"
    df["universe"] = universe
    df["role"] = ""
    selected = (df["status"] == "selected").to_numpy()
    if not selected.any():
        raise SimBridgeInputError(
            f"universe {universe!r}: no subhalo of snapshot {snapshot} has a stellar mass above "
            f"{settings['stellar_mass_min_msun']:.3g} Msun",
            tng.snapshot_chunk_path(base_path, snapshot, 0),
            "lower generalization.stellar_mass_min_msun or check the universe's base_path")
    df.loc[selected, "role"] = assign_roles(
        int(selected.sum()), int(settings["feature_selection_per_domain"]),
        float(settings["train_fraction"]), seed, universe)
    out = df[CATALOG_COLUMNS].sort_values("subhalo_id", kind="stable")
    with atomic_output(out_csv) as tmp:
        out.to_csv(tmp, index=False)
    log.info("universe %s: %d galaxies (%s)", universe, int(selected.sum()),
             out["role"].value_counts().to_dict())
    return out


def read_universe_catalog(path: str | Path) -> pd.DataFrame:
    """The catalog of one universe (selected galaxies only), checked for its columns."""
    df = read_table(path)
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise SimBridgeInputError(f"universe catalog lacks columns {missing}", path,
                                  "rerun generalization_catalog")
    df["role"] = df["role"].fillna("")
    return df[df["status"] == "selected"].reset_index(drop=True)


def check_role_counts(counts: dict[str, int], minimum: dict[str, int], domain: str,
                      path: str | Path) -> None:
    """Raise SimBridgeInputError if a domain has fewer galaxies in a role than required."""
    short = {r: (counts.get(r, 0), int(minimum[r])) for r in minimum
             if counts.get(r, 0) < int(minimum[r])}
    if short:
        detail = ", ".join(f"{r}: {have} < {need}" for r, (have, need) in short.items())
        raise SimBridgeInputError(
            f"domain {domain!r} has too few galaxies ({detail})", path,
            "give its universe more galaxies (demo: n_galaxies; real: a lower "
            "generalization.stellar_mass_min_msun), lower feature_selection.n_per_domain, or "
            "lower generalization.min_galaxies")



def demo_universe_params(gen_cfg: dict[str, Any], universe: dict[str, Any]) -> dict[str, Any]:
    """Demo-universe settings of one universe: the branch's shared ones, then its own."""
    return {**dict(gen_cfg.get("demo_universe", {})), **dict(universe.get("demo", {}))}


def training_domains(gen_cfg: dict[str, Any]) -> list[str]:
    """Domains that take part in feature selection, models and the regression."""
    held = set(gen_cfg["holdout_domains"])
    return [d["name"] for d in gen_cfg["domains"] if d["name"] not in held]


def check_generalization_config(gen_cfg: dict[str, Any]) -> None:
    """Checks the schema cannot express: unique names, known universes and held-out domains,
    two or more training domains, a valid wavelength range, demo settings the demo accepts.
    Raises SimBridgeConfigError naming the key."""
    key = "generalization"
    universes = [u["name"] for u in gen_cfg["universes"]]
    domains = [d["name"] for d in gen_cfg["domains"]]
    for what, names in (("universes", universes), ("domains", domains)):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SimBridgeConfigError(f"{key}.{what}: names {dup} appear more than once")
    for d in gen_cfg["domains"]:
        if d["universe"] not in universes:
            raise SimBridgeConfigError(
                f"{key}.domains: domain {d['name']!r} names universe {d['universe']!r}, "
                f"which is not in {key}.universes {universes}")
    unknown = sorted(set(gen_cfg["holdout_domains"]) - set(domains))
    if unknown:
        raise SimBridgeConfigError(f"{key}.holdout_domains {unknown} are not in {key}.domains")
    if len(training_domains(gen_cfg)) < 2:
        raise SimBridgeConfigError(f"{key}: at least two domains must not be held out "
                                   "(one model per training domain, errors between them)")
    spectra = gen_cfg["spectra"]
    if not spectra["wavelength_min_angstrom"] < spectra["wavelength_max_angstrom"]:
        raise SimBridgeConfigError(f"{key}.spectra: wavelength_min_angstrom must be below "
                                   "wavelength_max_angstrom")
    for u in gen_cfg["universes"]:
        if u.get("base_path") is None:
            params = demo_universe_params(gen_cfg, u)
            try:
                checked = _check_demo_params(params)
            except SimBridgeConfigError as err:
                raise SimBridgeConfigError(f"{key}.universes[{u['name']}].demo: {err}") from None
            snaps = [int(s["snapshot"]) for s in checked["snapshots"]]
            if int(gen_cfg["snapshot"]) not in snaps:
                raise SimBridgeConfigError(
                    f"{key}.snapshot {gen_cfg['snapshot']} is not among the demo snapshots "
                    f"{snaps} of universe {u['name']!r}")

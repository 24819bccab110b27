"""Train/validation/test splits grouped by physical galaxy, and the leakage check.

The unit of splitting is the lineage group (:mod:`simbridge.dataset.lineage`): all views of a
galaxy, at every snapshot, with its merged satellites, land in one split. Groups are stratified
by the ex-situ bin of their mean global ex-situ fraction, shuffled with the configured seed
inside each stratum, and dealt one by one, rarest stratum first, to the split that is furthest
below its target fraction (in galaxies). A stratum with at least three groups gives one to each
split first, so even rare high ex-situ galaxies reach validation and test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simbridge.dataset.balance import check_bin_edges, exsitu_bin
from simbridge.errors import SimBridgeConfigError, SimBridgeInputError, rebuild_fix
from simbridge.io import atomic_output, read_table, write_json_atomic
from simbridge.paths import SPLITS
from simbridge.sims.tng import open_hdf5

log = logging.getLogger(__name__)

SPLIT_COLUMNS = ["snapshot", "subhalo_id", "lineage_group", "split"]
_SPLIT_SALT = 0x5B17  # separates the split's random stream from other uses of the seed


class DatasetLeakageError(SimBridgeInputError):
    """A physical galaxy crosses dataset splits."""


def split_fractions(splits_cfg: Mapping[str, Any]) -> np.ndarray:
    """Target fractions in the order of SPLITS; they must sum to 1."""
    fr = splits_cfg["fractions"]
    arr = np.array([float(fr[s]) for s in SPLITS])
    if np.any(arr < 0) or abs(arr.sum() - 1.0) > 1e-6:
        raise SimBridgeConfigError(
            f"splits.fractions {dict(fr)} must be non-negative and sum to 1")
    return arr


def assign_group_splits(
    strata: np.ndarray, sizes: np.ndarray, fractions: np.ndarray, seed: int
) -> np.ndarray:
    """Split index of each group: stratified, seeded, greedy on the largest deficit.

    ``strata`` and ``sizes`` (galaxies per group) are per group; returns indices into SPLITS.
    Strata are dealt rarest first; a stratum with at least as many groups as there are
    (non-empty) splits gives its first groups one to each split, the rest go to the split that
    is furthest below its target.
    """
    rng = np.random.default_rng([int(seed), _SPLIT_SALT])
    labels = np.unique(strata)
    weight = [sizes[strata == s].sum() for s in labels]
    positive = np.asarray(fractions) > 0
    counts = np.zeros(len(fractions))
    out = np.full(len(strata), -1, dtype=np.int64)
    for i in np.lexsort((labels, weight)):
        members = rng.permutation(np.flatnonzero(strata == labels[i]))
        spread = len(members) >= positive.sum()
        used = np.zeros(len(fractions), dtype=bool)
        for g in members:
            deficit = fractions * (counts.sum() + sizes[g]) - counts
            if spread and not used[positive].all():
                deficit = np.where(used | ~positive, -np.inf, deficit)
            k = int(np.argmax(deficit))
            used[k] = True
            out[g] = k
            counts[k] += sizes[g]
    return out


def make_splits(
    plan: pd.DataFrame, lineage: pd.DataFrame, splits_cfg: Mapping[str, Any],
    bin_edges: list[float], seed: int,
) -> pd.DataFrame:
    """Split of every galaxy that has views in the plan, by lineage group."""
    fractions = split_fractions(splits_cfg)
    planned = plan[plan["n_views"] > 0][["snapshot", "subhalo_id", "exsitu_fraction_global"]]
    df = planned.merge(lineage[["snapshot", "subhalo_id", "lineage_group"]],
                       on=["snapshot", "subhalo_id"], how="left", validate="one_to_one")
    if df["lineage_group"].isna().any():
        bad = df[df["lineage_group"].isna()].iloc[0]
        raise SimBridgeInputError(
            f"galaxy {int(bad.subhalo_id)} of snapshot {int(bad.snapshot)} has views planned but "
            "no lineage entry", None,
            "the lineage table is older than the plan: rerun the workflow")
    df["lineage_group"] = df["lineage_group"].astype(np.int64)
    groups = df.groupby("lineage_group").agg(
        size=("subhalo_id", "size"), fex=("exsitu_fraction_global", "mean"))
    strata = exsitu_bin(groups["fex"].to_numpy(), check_bin_edges(bin_edges))
    idx = assign_group_splits(strata, groups["size"].to_numpy(), fractions, seed)
    group_split = pd.Series(np.array(SPLITS)[idx], index=groups.index)
    df["split"] = df["lineage_group"].map(group_split)
    counts = df["split"].value_counts()
    empty = [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0 and counts.get(s, 0) == 0]
    if empty:
        raise SimBridgeConfigError(
            f"split(s) {empty} got no galaxy: only {len(groups)} lineage groups for fractions "
            f"{dict(splits_cfg['fractions'])}; select more galaxies (tng.stellar_mass_min_msun, "
            "demo_universe.n_galaxies) or change splits.fractions")
    log.info("split: %s galaxies in %d lineage groups",
             {s: int(counts.get(s, 0)) for s in SPLITS}, len(groups))
    return df.sort_values(["snapshot", "subhalo_id"], ascending=[False, True])[SPLIT_COLUMNS]


def write_splits(
    plan_csv: str | Path, lineage_csv: str | Path, splits_cfg: Mapping[str, Any],
    bin_edges: list[float], seed: int, out_csv: str | Path,
    links_csv: str | Path | None = None,
) -> pd.DataFrame:
    """Read plan and lineage, assign splits, check them against the links, write the table."""
    plan = read_table(plan_csv)
    lineage = pd.read_csv(lineage_csv)
    df = make_splits(plan, lineage, splits_cfg, bin_edges, seed)
    if links_csv is not None:  # cheap gate before any split file is written
        problems = find_leaks(df, pd.read_csv(links_csv))
        if problems:
            raise DatasetLeakageError(_leak_message(problems), lineage_csv,
                                      "the lineage table and its links disagree: rerun "
                                      "link_snapshots (snakemake -R link_snapshots)")
    with atomic_output(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    return df


# --------------------------------------------------------------------------- leakage check

def find_leaks(samples: pd.DataFrame, links: pd.DataFrame) -> list[str]:
    """Every way a physical galaxy crosses splits, as readable lines (empty when clean).

    ``samples``: one row per sample with ``split``, ``snapshot``, ``subhalo_id`` and
    ``lineage_group`` as stored in the split files. ``links``: the lineage links. Three checks:
    a (snapshot, subhalo) in two splits; the two ends of a link in two splits; a lineage group
    in two splits.
    """
    problems = []
    galaxies = samples.drop_duplicates(["split", "snapshot", "subhalo_id"])
    per_galaxy = galaxies.groupby(["snapshot", "subhalo_id"])["split"].agg(sorted)
    for (snap, sub), where in per_galaxy[per_galaxy.map(len) > 1].items():
        problems.append(f"subhalo {sub} of snapshot {snap} is in splits {where}")
    where = per_galaxy.str[0].rename("split").reset_index()
    ends = (links.merge(where, on=["snapshot", "subhalo_id"])
                 .merge(where.rename(columns={"snapshot": "descendant_snapshot",
                                              "subhalo_id": "descendant_subhalo_id"}),
                        on=["descendant_snapshot", "descendant_subhalo_id"],
                        suffixes=("", "_descendant")))
    for link in ends[ends["split"] != ends["split_descendant"]].itertuples(index=False):
        problems.append(
            f"subhalo {link.subhalo_id} of snapshot {link.snapshot} ({link.split}) is linked "
            f"({link.method}) to subhalo {link.descendant_subhalo_id} of snapshot "
            f"{link.descendant_snapshot} ({link.split_descendant})")
    per_group = galaxies.groupby("lineage_group")["split"].agg(lambda s: sorted(set(s)))
    for group, splits in per_group[per_group.map(len) > 1].items():
        problems.append(f"lineage group {group} is in splits {splits}")
    return problems


def _leak_message(problems: list[str]) -> str:
    shown = "\n    ".join(problems[:20])
    more = f"\n    ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    return f"{len(problems)} leak(s) between dataset splits:\n    {shown}{more}"


def read_split_samples(split_files: Mapping[str, str | Path]) -> pd.DataFrame:
    """Per-sample galaxy identity (split, snapshot, subhalo_id, lineage_group) of split files."""
    frames = []
    for split, path in split_files.items():
        fix = rebuild_fix(path, "build_split")
        with open_hdf5(path, f"{split} split", fix=fix) as h5:
            try:
                frames.append(pd.DataFrame({
                    "split": split,
                    "snapshot": h5["snapshot"][...].astype(np.int64),
                    "subhalo_id": h5["subhalo_id"][...].astype(np.int64),
                    "lineage_group": h5["lineage_group"][...].astype(np.int64),
                }))
            except (OSError, KeyError) as err:
                raise SimBridgeInputError(f"{split} split file cannot be read ({err})", path,
                                          fix) from None
    return pd.concat(frames, ignore_index=True)


def check_leakage(
    split_files: Mapping[str, str | Path], links_csv: str | Path, out_json: str | Path
) -> dict:
    """Fail (DatasetLeakageError) if a galaxy crosses splits; else write the check's record.

    Reads the galaxy identities stored in the split files themselves (not the split table they
    were built from) and the lineage links.
    """
    samples = read_split_samples(split_files)
    links = pd.read_csv(links_csv)
    problems = find_leaks(samples, links)
    if problems:
        for path in split_files.values():  # no leaky dataset stays under its final name
            Path(path).unlink(missing_ok=True)
        raise DatasetLeakageError(
            _leak_message(problems) + "\n  the split files were removed",
            ", ".join(str(p) for p in split_files.values()),
            "rerun the workflow to rebuild the splits; if the leak persists, report it with "
            "the lineage tables (lineage.csv, lineage_links.csv)")
    galaxies = samples.drop_duplicates(["split", "snapshot", "subhalo_id"])
    record = {
        "status": "passed",
        "checks": ["galaxy in one split", "linked galaxies in one split",
                   "lineage group in one split"],
        "n_links_checked": int(len(links)),
        "samples_per_split": {s: int((samples["split"] == s).sum()) for s in split_files},
        "galaxies_per_split": {s: int((galaxies["split"] == s).sum()) for s in split_files},
        "lineage_groups_per_split": {
            s: int(galaxies.loc[galaxies["split"] == s, "lineage_group"].nunique())
            for s in split_files},
    }
    write_json_atomic(out_json, record)
    log.info("leakage check passed: %s", json.dumps(record["galaxies_per_split"]))
    return record


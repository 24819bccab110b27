"""Lineage: which selected galaxies at different snapshots are the same physical galaxy.

Snapshots are linked pairwise, each one to the next later selected snapshot (91 -> 99):

* **merger trees** (SubLink, read with ``illustris_python.sublink``) when the archive has them:
  a galaxy is linked to its descendant at the later snapshot;
* **shared particle IDs** otherwise: a galaxy is linked to every later galaxy that holds at
  least ``splits.min_shared_star_fraction`` of its star particles (wind cells excluded). Star
  particle IDs persist in TNG, so this finds the descendant and, for a galaxy that was torn
  apart, every galaxy that took a large share of its stars.

Links are joined transitively (connected components) into lineage groups: a galaxy at z=0, its main
progenitor at z=0.1 and every satellite that merged into it form one group, and a group never
crosses dataset splits (:mod:`simbridge.dataset.splits`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from simbridge import units
from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract.tng_maps import read_ranges
from simbridge.io import atomic_output, read_table
from simbridge.sims import tng

log = logging.getLogger(__name__)

LINK_COLUMNS = ["snapshot", "subhalo_id", "descendant_snapshot", "descendant_subhalo_id",
                "shared_star_fraction", "method"]
LINEAGE_COLUMNS = ["snapshot", "subhalo_id", "lineage_group", "group_size"]
LINEAGE_METHODS = ("auto", "merger_trees", "particle_ids")
#: Longest single loadSubset read when collecting star IDs (bounds the memory of one read).
MAX_READ_PARTICLES = 20_000_000


def galaxy_star_ids(
    base_path: str | Path, snapshot: int, galaxies: pd.DataFrame, max_gap: int,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Star ParticleIDs (wind excluded) of the catalog rows ``galaxies`` and each ID's row.

    Reads with the same contiguous ``loadSubset`` ranges as the extraction.
    """
    header = tng.read_snapshot_header(base_path, snapshot)
    chunk_offsets = tng.read_chunk_offsets(base_path, header)
    offsets = galaxies["offset_part4"].to_numpy(dtype=np.int64)
    lengths = galaxies["n_part4"].to_numpy(dtype=np.int64)
    ids, owner = [], []
    ranges = read_ranges(offsets, lengths, max_gap, max_length=MAX_READ_PARTICLES)
    for start, stop, members in tqdm(ranges, desc=f"snapshot {snapshot:03d}: star IDs",
                                     unit="read", disable=not progress):
        stars = tng.load_star_range(base_path, header, chunk_offsets, start, stop - start,
                                    ["ParticleIDs", "GFM_StellarFormationTime"])
        for i in members:
            sl = slice(int(offsets[i]) - start, int(offsets[i] + lengths[i]) - start)
            keep = units.is_star_not_wind(stars["GFM_StellarFormationTime"][sl])
            ids.append(np.asarray(stars["ParticleIDs"][sl], dtype=np.uint64)[keep])
            owner.append(np.full(int(keep.sum()), i, dtype=np.int64))
    if not ids:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return np.concatenate(ids), np.concatenate(owner)


def particle_id_links(
    early_ids: np.ndarray, early_owner: np.ndarray, n_early: int,
    late_ids: np.ndarray, late_owner: np.ndarray, min_shared_fraction: float,
) -> pd.DataFrame:
    """Pairs (early row, late row) sharing at least ``min_shared_fraction`` of the early stars.

    Returns columns ``early``, ``late``, ``shared_fraction`` (shared stars / early stars).
    A sorted search over the late IDs: O((N_early + N_late) log N_late).
    """
    order = np.argsort(late_ids, kind="stable")
    late_sorted = late_ids[order]
    pos = np.searchsorted(late_sorted, early_ids)
    pos_clipped = np.minimum(pos, max(len(late_sorted) - 1, 0))
    found = (pos < len(late_sorted)) & (late_sorted[pos_clipped] == early_ids) \
        if len(late_sorted) else np.zeros(len(early_ids), bool)
    e = early_owner[found]
    lt = late_owner[order[pos_clipped[found]]]
    if e.size == 0:
        return pd.DataFrame({"early": [], "late": [], "shared_fraction": []})
    n_late = int(late_owner.max()) + 1
    keys, shared = np.unique(e.astype(np.int64) * n_late + lt, return_counts=True)
    pair_e, pair_l = np.divmod(keys, n_late)
    n_stars = np.bincount(early_owner, minlength=n_early)
    frac = shared / n_stars[pair_e]
    keep = frac >= min_shared_fraction
    return pd.DataFrame({"early": pair_e[keep], "late": pair_l[keep],
                         "shared_fraction": frac[keep]})


def lineage_labels(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes joined by ``pairs`` (k, 2), labelled in the order of
    their first node (scipy's connected_components numbers them that way)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def _tree_links(base_path: str | Path, early: int, e_ids: np.ndarray,
                later: dict[int, np.ndarray], progress: bool) -> dict[int, pd.DataFrame]:
    """Links (early row -> late row) from SubLink descendants, one walk for all ``later``
    snapshots (snapshot -> selected subhalo IDs)."""
    from simbridge.sims.tng_trees import sublink_descendants_at

    desc = sublink_descendants_at(base_path, early, e_ids, list(later), progress=progress)
    out = {}
    for late, l_ids in later.items():
        l_rows = pd.Index(l_ids).get_indexer(desc[late])  # -1: no selected descendant there
        e_rows = np.flatnonzero(l_rows >= 0)
        out[late] = pd.DataFrame({"early": e_rows, "late": l_rows[e_rows],
                                  "shared_fraction": np.full(len(e_rows), np.nan)})
    return out


def choose_method(base_path: str | Path, snapshot: int, method: str) -> str:
    """'merger_trees' or 'particle_ids' for linking ``snapshot`` to the next one."""
    if method not in LINEAGE_METHODS:
        raise SimBridgeConfigError(f"splits.lineage = {method!r}: use one of {LINEAGE_METHODS}")
    if method == "particle_ids":
        return method
    from simbridge.sims.tng_trees import has_sublink_trees, sublink_tree_paths

    if has_sublink_trees(base_path, snapshot):
        return "merger_trees"
    tree_files = sublink_tree_paths(base_path) if method == "auto" else []
    if tree_files:
        log.warning(
            "SubLink tree files exist under %s but cannot be used for snapshot %d (unreadable, "
            "or its offsets file has no Subhalo/SubLink entries): linking through particle IDs",
            tree_files[0].parent, snapshot)
    if method == "merger_trees":
        raise SimBridgeInputError(
            f"splits.lineage is 'merger_trees' but there are no SubLink trees (or no SubLink "
            f"offsets for snapshot {snapshot})",
            Path(base_path).parent / "postprocessing" / "trees" / "SubLink",
            "download the SubLink trees and offsets, or set splits.lineage: auto "
            "(falls back to shared particle IDs)")
    return "particle_ids"


def _links_to_later(
    base_path: str | Path, early: int, later: list[int], sel: dict[int, pd.DataFrame],
    method: str, splits_cfg: dict[str, Any], max_gap: int,
    star_ids: dict[int, tuple[np.ndarray, np.ndarray]], progress: bool,
) -> dict[int, pd.DataFrame]:
    """Links (early row -> late row) from the selected galaxies of ``early`` to each later
    snapshot's."""
    ids = {s: sel[s]["subhalo_id"].to_numpy(dtype=np.int64) for s in (early, *later)}
    if method == "merger_trees":
        return _tree_links(base_path, early, ids[early], {s: ids[s] for s in later}, progress)
    for s in (early, *later):
        if s not in star_ids:  # read once per snapshot
            star_ids[s] = galaxy_star_ids(base_path, s, sel[s], max_gap, progress)
    return {late: particle_id_links(*star_ids[early], len(ids[early]), *star_ids[late],
                                    float(splits_cfg["min_shared_star_fraction"]))
            for late in later}


def link_galaxies(
    base_path: str | Path, catalogs: dict[int, pd.DataFrame], splits_cfg: dict[str, Any],
    max_gap: int, progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lineage groups of the selected galaxies of every snapshot, and the links found.

    ``catalogs`` maps snapshot -> its galaxy catalog (rows with status 'selected' are used).
    Every snapshot is linked to every later one. With particle IDs, the star IDs of the
    selected galaxies of all snapshots are held in memory (8 bytes per star particle).
    """
    snaps = sorted(catalogs)
    sel = {s: catalogs[s][catalogs[s]["status"] == "selected"].reset_index(drop=True)
           for s in snaps}
    base = {}
    k = 0
    for s in sorted(snaps, reverse=True):  # latest snapshot first: groups named from z=0
        base[s] = k
        k += len(sel[s])
    n_total = k
    links, pairs = [], []
    star_ids: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    # every earlier snapshot to every later one: a chain through a middle snapshot breaks where
    # the galaxy is not selected there (below the cut, flagged) or where SubLink skips it
    for i, early in enumerate(snaps[:-1]):
        method = choose_method(base_path, early, splits_cfg["lineage"])
        found_by_late = _links_to_later(base_path, early, snaps[i + 1:], sel, method,
                                        splits_cfg, max_gap, star_ids, progress)
        e_ids = sel[early]["subhalo_id"].to_numpy(dtype=np.int64)
        for late, found in found_by_late.items():
            l_ids = sel[late]["subhalo_id"].to_numpy(dtype=np.int64)
            e_rows = found["early"].to_numpy(dtype=np.int64)
            l_rows = found["late"].to_numpy(dtype=np.int64)
            pairs.append(np.c_[base[early] + e_rows, base[late] + l_rows])
            links.append(pd.DataFrame({
                "snapshot": early, "subhalo_id": e_ids[e_rows], "descendant_snapshot": late,
                "descendant_subhalo_id": l_ids[l_rows],
                "shared_star_fraction": found["shared_fraction"].to_numpy(), "method": method,
            }))
            n_linked = len(np.unique(e_rows))
            log.info("snapshot %d -> %d (%s): %d links, %d of %d galaxies linked", early, late,
                     method, len(found), n_linked, len(e_ids))
            if late == snaps[i + 1] and len(e_ids) >= 10 and n_linked < 0.5 * len(e_ids):
                log.warning(
                    "only %d of %d galaxies of snapshot %d have a selected descendant at "
                    "snapshot %d: are the snapshots far apart, or do particle IDs / trees not "
                    "match?", n_linked, len(e_ids), early, late)
        star_ids.pop(early, None)  # no later pair needs the earliest snapshot again
    labels = lineage_labels(n_total, np.concatenate(pairs) if pairs else np.zeros((0, 2)))
    lineage = pd.concat([
        pd.DataFrame({"snapshot": s, "subhalo_id": sel[s]["subhalo_id"].to_numpy(),
                      "lineage_group": labels[base[s]:base[s] + len(sel[s])]})
        for s in sorted(snaps, reverse=True)
    ], ignore_index=True)
    lineage["group_size"] = lineage.groupby("lineage_group")["subhalo_id"].transform("size")
    link_table = (pd.concat(links, ignore_index=True) if links
                  else pd.DataFrame(columns=LINK_COLUMNS))
    return lineage[LINEAGE_COLUMNS], link_table[LINK_COLUMNS]


def write_lineage(
    base_path: str | Path, catalog_csvs: Sequence[str | Path], splits_cfg: dict[str, Any],
    max_gap: int, out_lineage: str | Path, out_links: str | Path, progress: bool = True,
) -> pd.DataFrame:
    """Link the galaxy catalogs of all snapshots and write lineage and link tables."""
    catalogs = {}
    for path in catalog_csvs:
        cat = read_table(path)
        if cat.empty:
            raise SimBridgeInputError("the galaxy catalog is empty", path,
                                      "rerun select_galaxies (snakemake -R select_galaxies)")
        catalogs[int(cat["snapshot"].iloc[0])] = cat
    lineage, links = link_galaxies(base_path, catalogs, splits_cfg, max_gap, progress)
    with atomic_output(out_links) as tmp:
        links.to_csv(tmp, index=False)
    with atomic_output(out_lineage) as tmp:
        lineage.to_csv(tmp, index=False)
    return lineage

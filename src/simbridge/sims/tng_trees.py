"""Following IllustrisTNG subhalos forward in time through SubLink merger trees.

SubLink trees (Rodriguez-Gomez et al. 2015) sit in ``postprocessing/trees/<tree>/
tree_extended.K.hdf5``: one row per subhalo, depth-first, each tree whole in one file, and
SubhaloID contiguous within a tree (TNG data specifications). The offsets file of each snapshot
gives a subhalo's global row (``Subhalo/<tree>/RowNum``, -1 when in no tree) and SubhaloID.
So the descendant of the subhalo in global row ``r`` with ID ``s`` sits in row
``r + DescendantID - s``, the same arithmetic illustris_python's ``loadTree`` uses for its
row ranges. :func:`sublink_descendants` hops along that link, reading only a few rows per
subhalo: it needs no main-branch assumption (a satellite's descendant chain need not be the
main progenitor branch of its root) and it avoids ``loadTree(onlyMDB=True)``, which reads every
row between the root descendant and the subhalo (millions, deep inside a cluster's tree).
Paths are resolved with illustris_python's own ``treePath``, ``gcPath`` and ``offsetPath``.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Sequence
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
from numpy.typing import ArrayLike, NDArray
from tqdm import tqdm

from simbridge.errors import SimBridgeInputError
from simbridge.sims.tng import offsets_path, open_hdf5

#: Tree columns the descendant walk reads.
WALK_FIELDS: tuple[str, ...] = ("SubhaloID", "DescendantID", "SnapNum", "SubfindID")
#: Offsets-file entries (under ``Subhalo/<tree>/``) that locate a subhalo in the trees.
OFFSET_FIELDS: tuple[str, ...] = ("RowNum", "SubhaloID", "LastProgenitorID")

_REDOWNLOAD = ("re-download this file from the archive (it is truncated or corrupt); compare "
               "its size with the original")
_BLOCK = 4096  # subhalos walked together; the progress bar advances per block


def _no_trees_fix(tree_name: str) -> str:
    return (f"download postprocessing/trees/{tree_name}/ (all tree_extended.*.hdf5 files) and "
            "the offsets files from the archive, or link snapshots through particle IDs "
            "(check has_sublink_trees first)")


def sublink_tree_paths(base_path: str | Path, tree_name: str = "SubLink") -> list[Path]:
    """All ``tree_extended.K.hdf5`` files in order, found as illustris_python's treePath does.

    Returns [] when there are none; raises SimBridgeInputError when the numbering has a gap.
    """
    base = str(base_path)
    try:
        pattern = il.sublink.treePath(base, tree_name, "*")
    except ValueError:
        return []
    # no normpath: with output/ a symlink, "output/.." must resolve as the kernel (and il) do
    n_files = len(glob.glob(pattern))
    paths = []
    for k in range(n_files):
        path = Path(pattern.replace("tree_extended.*.hdf5", f"tree_extended.{k}.hdf5"))
        if not path.is_file():
            raise SimBridgeInputError(
                f"{tree_name} tree file {k} is missing ({n_files} tree files found)", path,
                _no_trees_fix(tree_name))
        paths.append(path)
    return paths


def _uses_offsets_file(base_path: str, snapshot: int, tree_name: str) -> bool:
    """TNG keeps tree offsets in offsets_NNN.hdf5; original Illustris in the group catalog."""
    return "fof_subhalo" in il.groupcat.gcPath(base_path, snapshot) or tree_name == "SubLink_gal"


def has_sublink_trees(base_path: str | Path, snapshot: int, tree_name: str = "SubLink") -> bool:
    """True if the tree files exist and ``snapshot``'s offsets locate its subhalos in them."""
    try:
        paths = sublink_tree_paths(base_path, tree_name)
        if not paths:
            return False
        with h5py.File(paths[0], "r") as fh:
            if any(name not in fh for name in WALK_FIELDS):
                return False
        base = str(base_path)
        if _uses_offsets_file(base, snapshot, tree_name):
            path, prefix = offsets_path(base, snapshot), f"Subhalo/{tree_name}/"
        else:
            path, prefix = Path(il.groupcat.gcPath(base, snapshot, 0)), "Offsets/Subhalo_Sublink"
        with h5py.File(path, "r") as fh:
            return all(prefix + name in fh for name in OFFSET_FIELDS)
    except Exception:  # noqa: BLE001 - a yes/no question: any unreadable piece means no
        return False


def _read_tree_offsets(
    base_path: str, snapshot: int, ids: NDArray, tree_name: str
) -> tuple[NDArray, NDArray]:
    """Global tree row (RowNum) and SubhaloID of each subfind ID at ``snapshot``."""
    if not _uses_offsets_file(base_path, snapshot, tree_name):
        # original Illustris: offsets in the group catalog chunks; illustris_python reads them
        rows, sids = np.full(len(ids), -1, np.int64), np.full(len(ids), -1, np.int64)
        for k, sub_id in enumerate(ids.tolist()):
            try:
                row, _, sid = il.sublink.treeOffsets(base_path, snapshot, sub_id, tree_name)
            except Exception as err:  # noqa: BLE001 - il raises whatever h5py raises
                raise SimBridgeInputError(
                    f"cannot read the {tree_name} offsets of subhalo {sub_id} at snapshot "
                    f"{snapshot} ({err})", il.groupcat.gcPath(base_path, snapshot, 0),
                    _no_trees_fix(tree_name)) from None
            rows[k], sids[k] = row, sid
        return rows, sids
    path = offsets_path(base_path, snapshot)
    prefix = f"Subhalo/{tree_name}/"
    with open_hdf5(path, f"offsets file of snapshot {snapshot}") as fh:
        absent = [prefix + name for name in ("RowNum", "SubhaloID") if prefix + name not in fh]
        if absent:
            raise SimBridgeInputError(
                f"offsets file has no {absent}: it does not locate subhalos in the {tree_name} "
                "trees", path, _no_trees_fix(tree_name))
        n_subhalos = fh[prefix + "RowNum"].shape[0]
        if ids.size and ids.max() >= n_subhalos:
            raise SimBridgeInputError(
                f"subhalo {ids.max()} requested at snapshot {snapshot}, but the offsets file "
                f"lists {n_subhalos} subhalos", path,
                "check that the subhalo IDs are subfind indices of this snapshot")
        if not ids.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        lo, hi = int(ids.min()), int(ids.max()) + 1
        try:
            rows = np.asarray(fh[prefix + "RowNum"][lo:hi], dtype=np.int64)[ids - lo]
            sids = np.asarray(fh[prefix + "SubhaloID"][lo:hi], dtype=np.int64)[ids - lo]
        except OSError as err:
            raise SimBridgeInputError(f"cannot read {prefix}RowNum ({err})", path,
                                      _REDOWNLOAD) from None
    return rows, sids


class _TreeColumns:
    """Row reads of a few columns across all tree files, by global row number."""

    def __init__(self, paths: Sequence[Path], stack: contextlib.ExitStack, tree_name: str):
        self.paths = list(paths)
        self.files = [stack.enter_context(open_hdf5(p, f"{tree_name} tree file"))
                      for p in self.paths]
        counts = []
        for path, fh in zip(self.paths, self.files, strict=True):
            absent = [name for name in WALK_FIELDS if name not in fh]
            if absent:
                raise SimBridgeInputError(f"{tree_name} tree file lacks {absent}", path,
                                          _REDOWNLOAD)
            counts.append(fh["SubhaloID"].shape[0])
        # first global row of each file: RowNum counts across files, as in il.sublink
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def read(self, name: str, rows: NDArray) -> NDArray:
        """Column ``name`` at global ``rows`` (int64)."""
        out = np.empty(len(rows), dtype=np.int64)
        if not rows.size:
            return out
        if rows.min() < 0 or rows.max() >= self.starts[-1]:
            raise SimBridgeInputError(
                f"tree row {int(rows.max())} lies outside the {self.starts[-1]} rows of the "
                f"{len(self.paths)} tree files tree_extended.0-{len(self.paths) - 1}.hdf5",
                self.paths[0].parent,
                "tree files after the last one found are probably missing (a partial "
                "download): fetch every tree_extended.*.hdf5 file; otherwise the offsets and "
                "tree files do not match; " + _REDOWNLOAD)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for k in np.unique(which).tolist():
            here = which == k
            local, inverse = np.unique(rows[here] - self.starts[k], return_inverse=True)
            dataset = self.files[k][name]
            try:
                lo, hi = int(local[0]), int(local[-1]) + 1
                if hi - lo <= max(65536, 16 * len(local)):  # one slice beats scattered reads
                    values = dataset[lo:hi][local - lo]
                else:
                    values = dataset[local]
            except OSError as err:
                raise SimBridgeInputError(f"cannot read {name} ({err})", self.paths[k],
                                          _REDOWNLOAD) from None
            out[here] = np.asarray(values, dtype=np.int64)[inverse]
        return out


def sublink_descendants(
    base_path: str | Path,
    snapshot: int,
    subhalo_ids: ArrayLike,
    target_snapshot: int,
    tree_name: str = "SubLink",
    progress: bool = True,
) -> NDArray[np.int64]:
    """Subfind ID at ``target_snapshot`` of the descendant of each subhalo of ``snapshot``.

    Follows DescendantID from each subhalo (subfind IDs at ``snapshot``) through the trees.
    Returns int64 of the same length: -1 where the subhalo is in no tree, its chain ends
    before ``target_snapshot``, or the chain skips over it (SubLink lets a descendant skip a
    snapshot). Raises ValueError unless ``target_snapshot > snapshot``, and
    SimBridgeInputError for missing, truncated or inconsistent tree or offsets files.
    """
    return sublink_descendants_at(base_path, snapshot, subhalo_ids, [target_snapshot],
                                  tree_name, progress)[int(target_snapshot)]


def sublink_descendants_at(
    base_path: str | Path,
    snapshot: int,
    subhalo_ids: ArrayLike,
    target_snapshots: Sequence[int],
    tree_name: str = "SubLink",
    progress: bool = True,
) -> dict[int, NDArray[np.int64]]:
    """:func:`sublink_descendants` for several later snapshots in one walk: target -> IDs."""
    targets = np.array(sorted({int(t) for t in target_snapshots}), dtype=np.int64)
    if targets.size == 0 or targets[0] <= int(snapshot):
        raise ValueError(f"target snapshots {list(target_snapshots)} must be later than "
                         f"snapshot ({snapshot}): SubLink descendants run forward in time")
    ids = np.asarray(subhalo_ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError("subhalo_ids must be a 1-D sequence of integer subfind IDs")
    ids = ids.astype(np.int64)
    if (ids < 0).any():
        raise ValueError("subhalo_ids must be >= 0")
    base = str(base_path)
    result = np.full((len(targets), len(ids)), -1, dtype=np.int64)
    paths = sublink_tree_paths(base, tree_name)
    if not paths:
        expected = Path(base).parent / "postprocessing" / "trees" / tree_name
        raise SimBridgeInputError(f"no {tree_name} merger trees found", expected / (
            "tree_extended.0.hdf5"), _no_trees_fix(tree_name))
    rows_all, sids_all = _read_tree_offsets(base, int(snapshot), ids, tree_name)
    with contextlib.ExitStack() as stack:
        columns = _TreeColumns(paths, stack, tree_name)
        bar = tqdm(total=len(ids),
                   desc=f"{tree_name} descendants {snapshot}->{','.join(map(str, targets))}",
                   unit="subhalo", disable=not progress, mininterval=2.0)
        with bar:
            for start in range(0, len(ids), _BLOCK):
                block = np.arange(start, min(start + _BLOCK, len(ids)))
                block = block[rows_all[block] >= 0]
                _walk(columns, block, rows_all[block], sids_all[block], int(snapshot),
                      targets, result)
                bar.update(min(_BLOCK, len(ids) - start))
    return {int(t): result[k] for k, t in enumerate(targets)}


def _walk(
    columns: _TreeColumns, index: NDArray, rows: NDArray, sids: NDArray, snapshot: int,
    targets: NDArray, result: NDArray,
) -> None:
    """Hop from each row to its descendant's row until past the last target snapshot.

    ``targets`` is sorted; ``result[k, i]`` gets the SubfindID where subhalo ``i``'s chain
    stands at ``targets[k]``.
    """
    _check_rows(columns, rows, sids, "the offsets file's SubhaloID does not match its RowNum")
    snap = np.full(len(index), snapshot, dtype=np.int64)
    while index.size:
        desc = columns.read("DescendantID", rows)
        linked = desc >= 0
        index, rows, sids, desc = index[linked], rows[linked], sids[linked], desc[linked]
        rows = rows + (desc - sids)  # SubhaloID is contiguous within a tree
        sids, previous = desc, snap[linked]
        _check_rows(columns, rows, sids, "a DescendantID points outside its tree")
        snap = columns.read("SnapNum", rows)
        if (snap <= previous).any():  # also guarantees that the walk ends
            raise SimBridgeInputError("a descendant is not at a later snapshot",
                                      columns.paths[0].parent, _REDOWNLOAD)
        k = np.searchsorted(targets, snap)
        hit = (k < len(targets)) & (targets[np.minimum(k, len(targets) - 1)] == snap)
        result[k[hit], index[hit]] = columns.read("SubfindID", rows[hit])
        before = snap < targets[-1]  # past the last target: done (or it was skipped)
        index, rows, sids, snap = index[before], rows[before], sids[before], snap[before]


def _check_rows(columns: _TreeColumns, rows: NDArray, sids: NDArray, problem: str) -> None:
    """The tree rows must hold the SubhaloIDs the offsets or links promise."""
    if (columns.read("SubhaloID", rows) != sids).any():
        raise SimBridgeInputError(f"inconsistent merger trees: {problem}",
                                  columns.paths[0].parent, _REDOWNLOAD)

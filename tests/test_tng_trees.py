"""SubLink merger trees: the demo writes them in TNG's layout and sublink_descendants follows them.

References are independent of the code under test: the demo's own bookkeeping (its summary),
illustris_python's ``loadTree``, brute-force walks over the DescendantID column, and trees
written by hand row by row.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
import pytest

from simbridge.errors import SimBridgeInputError
from simbridge.sims.tng_demo import generate_demo_universe, write_sublink_trees
from simbridge.sims.tng_trees import has_sublink_trees, sublink_descendants, sublink_tree_paths

SEED = 20261122
SMALL = {"n_galaxies": 16}
TINY = {"n_galaxies": 4, "star_particle_mass_msun": 4.0e7}
WALK = ["SubhaloID", "DescendantID", "SnapNum", "SubfindID"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    sim = tmp_path_factory.mktemp("trees") / "TNG-demo"
    return sim, generate_demo_universe(sim, SMALL, SEED)


def read_trees(base: str | Path) -> dict[str, np.ndarray]:
    """All tree files concatenated in RowNum order (plain h5py)."""
    paths = sublink_tree_paths(base)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(h5py.File(p, "r")) for p in paths]
        return {k: np.concatenate([f[k][()] for f in files]) for k in files[0]}


def brute_descendant(trees: dict, snap: int, sub_id: int, target: int) -> int:
    """Find the row by scanning (SnapNum, SubfindID), then follow DescendantID by lookup."""
    match = np.flatnonzero((trees["SnapNum"] == snap) & (trees["SubfindID"] == sub_id))
    if match.size == 0:
        return -1
    row_of = {int(s): k for k, s in enumerate(trees["SubhaloID"])}
    k = int(match[0])
    while trees["DescendantID"][k] != -1:
        k = row_of[int(trees["DescendantID"][k])]
        if trees["SnapNum"][k] >= target:
            return int(trees["SubfindID"][k]) if trees["SnapNum"][k] == target else -1
    return -1


def load_tree(base: str, snap: int, sub_id: int, **kwargs) -> dict | None:
    """illustris_python's loadTree without its print for subhalos in no tree."""
    with contextlib.redirect_stdout(io.StringIO()):
        return il.sublink.loadTree(base, snap, sub_id, cache=False, **kwargs)


def mdb_descendant(base: str, snap: int, sub_id: int, target: int) -> int:
    """loadTree(onlyMDB=True) rows, walked by SubhaloID (they need not be a single branch)."""
    tree = load_tree(base, snap, sub_id, fields=WALK, onlyMDB=True)
    if tree is None:
        return -1
    row_of = {int(s): k for k, s in enumerate(tree["SubhaloID"])}
    k = tree["count"] - 1  # the subhalo itself is the last row loaded
    assert (tree["SnapNum"][k], tree["SubfindID"][k]) == (snap, sub_id)
    while tree["DescendantID"][k] != -1:
        k = row_of[int(tree["DescendantID"][k])]
        if tree["SnapNum"][k] >= target:
            return int(tree["SubfindID"][k]) if tree["SnapNum"][k] == target else -1
    return -1


def check_sublink_invariants(trees: dict) -> None:
    """Every tree column against brute force from DescendantID, Mass and SubhaloGrNr alone."""
    n = len(trees["SubhaloID"])
    sid, desc = trees["SubhaloID"], trees["DescendantID"]
    row_of = {int(s): k for k, s in enumerate(sid)}
    assert len(row_of) == n
    children: list[list[int]] = [[] for _ in range(n)]
    for k in range(n):
        if desc[k] != -1:
            children[row_of[int(desc[k])]].append(k)
            assert trees["SnapNum"][row_of[int(desc[k])]] > trees["SnapNum"][k]
    history = np.zeros(n)
    for k in np.argsort(trees["SnapNum"], kind="stable"):
        history[k] = trees["Mass"][k] + max((history[c] for c in children[k]), default=0.0)
    np.testing.assert_allclose(trees["MassHistory"], history, rtol=1e-5)

    def ids(rows: list[int]) -> list[int]:
        return [int(sid[r]) for r in rows]

    for k in range(n):
        progs = sorted(children[k], key=lambda c: -history[c])
        chain, p = [], trees["FirstProgenitorID"][k]
        while p != -1:
            chain.append(int(p))
            p = trees["NextProgenitorID"][row_of[int(p)]]
        assert chain == ids(progs)  # main progenitor: the highest mass history, then the rest
        subtree, todo = [], [k]
        while todo:
            r = todo.pop()
            subtree.append(r)
            todo.extend(children[r])
        # depth-first: the subtree is the contiguous block up to LastProgenitorID
        assert sorted(ids(subtree)) == list(range(sid[k], trees["LastProgenitorID"][k] + 1))
        leaf = k
        while children[leaf]:
            leaf = max(children[leaf], key=lambda c: history[c])
        assert trees["MainLeafProgenitorID"][k] == sid[leaf]
        root = k
        while desc[root] != -1:
            root = row_of[int(desc[root])]
        assert trees["RootDescendantID"][k] == sid[root]
        assert trees["TreeID"][k] <= sid[k] < trees["TreeID"][k] + 10**8
        assert trees["SubhaloIDRaw"][k] == int(trees["SnapNum"][k]) * 10**12 + int(
            trees["SubfindID"][k])
    for snap in np.unique(trees["SnapNum"]):
        for grp in np.unique(trees["SubhaloGrNr"][trees["SnapNum"] == snap]):
            members = np.flatnonzero((trees["SnapNum"] == snap) & (trees["SubhaloGrNr"] == grp))
            members = sorted(members, key=lambda r: -history[r])
            assert set(trees["FirstSubhaloInFOFGroupID"][members]) == {sid[members[0]]}
            chain = [int(trees["NextSubhaloInFOFGroupID"][r]) for r in members]
            assert chain == ids(members[1:]) + [-1]
            assert len(set(trees["TreeID"][members])) == 1  # a FoF group lies in one tree


def check_offsets(base: str, trees: dict, snaps: list[int]) -> None:
    """RowNum/SubhaloID/LastProgenitorID of every subhalo point at its own tree row."""
    for snap in snaps:
        with h5py.File(il.groupcat.offsetPath(base, snap), "r") as fh:
            row = fh["Subhalo/SubLink/RowNum"][()]
            sub_id = fh["Subhalo/SubLink/SubhaloID"][()]
            last = fh["Subhalo/SubLink/LastProgenitorID"][()]
        for dataset in (row, sub_id, last):
            assert dataset.dtype == np.int64
        in_tree = np.flatnonzero(trees["SnapNum"] == snap)
        assert (row >= 0).sum() == len(in_tree)
        for r in in_tree:
            s = trees["SubfindID"][r]
            assert (row[s], sub_id[s], last[s]) == (r, trees["SubhaloID"][r],
                                                    trees["LastProgenitorID"][r])


# ---------------------------------------------------------------------------------------------
# The demo universe's trees
# ---------------------------------------------------------------------------------------------


def test_descendants_reproduce_the_demo_truth(demo):
    sim, summary = demo
    base = summary["base_path"]
    assert has_sublink_trees(base, 91) and has_sublink_trees(base, 99)
    assert [Path(p).resolve() for p in summary["sublink_tree_files"]] == [
        p.resolve() for p in sublink_tree_paths(base)]
    n91 = next(s["n_subhalos"] for s in summary["snapshots"] if s["snapshot"] == 91)
    expected = {}
    for g in summary["galaxies"]:
        central99 = g["central_subhalo_id"]["99"]
        expected[g["central_subhalo_id"]["91"]] = central99
        if "91" in g["satellite_subhalo_id"]:
            expected[g["satellite_subhalo_id"]["91"]] = g["satellite_subhalo_id"]["99"]
        if "91" in g["merging_satellite_subhalo_id"]:
            assert "99" not in g["merging_satellite_subhalo_id"]
            expected[g["merging_satellite_subhalo_id"]["91"]] = central99  # merged into host
    assert sorted(expected) == list(range(n91))  # every subhalo at z=0.1 is accounted for
    assert sum("91" in g["merging_satellite_subhalo_id"] for g in summary["galaxies"]) >= 2
    assert sum(g["has_satellite"] for g in summary["galaxies"]) >= 2
    ids = np.array(sorted(expected))
    got = sublink_descendants(base, 91, ids, 99, progress=False)
    assert got.dtype == np.int64
    assert got.tolist() == [expected[i] for i in ids.tolist()]
    # the same through illustris_python's loadTree, and in any order with repeats
    assert [mdb_descendant(base, 91, int(i), 99) for i in ids] == got.tolist()
    shuffled = np.random.default_rng(0).choice(ids, 40)
    assert sublink_descendants(base, 91, shuffled, 99, progress=False).tolist() == [
        expected[i] for i in shuffled.tolist()]
    assert sublink_descendants(base, 91, [], 99).shape == (0,)
    with pytest.raises(ValueError, match="later"):
        sublink_descendants(base, 99, ids[:2], 91)


def test_load_tree_main_branch_and_merged_satellite(demo):
    _, summary = demo
    base = summary["base_path"]
    subs = {snap: il.groupcat.loadSubhalos(base, snap, fields=["SubhaloMassType"])
            for snap in (99, 91)}
    fields = ["SnapNum", "SubfindID", "SubhaloMassType", "NextProgenitorID", "SubhaloID"]
    merged_seen = 0
    for g in summary["galaxies"]:
        c99, c91 = g["central_subhalo_id"]["99"], g["central_subhalo_id"]["91"]
        mpb = load_tree(base, 99, c99, fields=fields, onlyMPB=True)
        assert mpb["SnapNum"].tolist() == [99, 91]
        assert mpb["SubfindID"].tolist() == [c99, c91]
        for k, snap in enumerate((99, 91)):
            np.testing.assert_array_equal(mpb["SubhaloMassType"][k],
                                          subs[snap][mpb["SubfindID"][k]])
        full = load_tree(base, 99, c99, fields=fields)
        nodes = list(zip(full["SnapNum"].tolist(), full["SubfindID"].tolist(), strict=True))
        if "91" in g["merging_satellite_subhalo_id"]:
            merging = (91, g["merging_satellite_subhalo_id"]["91"])
            assert merging in nodes and merging not in [(99, c99), (91, c91)]
            # it is the main progenitor's next progenitor
            assert full["NextProgenitorID"][1] == full["SubhaloID"][nodes.index(merging)]
            merged_seen += 1
        if g["has_satellite"]:  # a separate branch: not in the central's subtree
            assert (91, g["satellite_subhalo_id"]["91"]) not in nodes
            sat = load_tree(base, 99, g["satellite_subhalo_id"]["99"], fields=fields,
                            onlyMPB=True)
            assert sat["SubfindID"].tolist() == [g["satellite_subhalo_id"]["99"],
                                                 g["satellite_subhalo_id"]["91"]]
    assert merged_seen >= 2


def test_demo_trees_follow_sublink_conventions(demo):
    _, summary = demo
    base = summary["base_path"]
    assert len(sublink_tree_paths(base)) == 2  # RowNum counts across files
    trees = read_trees(base)
    check_sublink_invariants(trees)
    check_offsets(base, trees, [91, 99])
    dtypes = {"SubhaloID": np.int64, "SubhaloIDRaw": np.int64, "DescendantID": np.int64,
              "FirstProgenitorID": np.int64, "NextProgenitorID": np.int64,
              "MainLeafProgenitorID": np.int64, "LastProgenitorID": np.int64,
              "RootDescendantID": np.int64, "FirstSubhaloInFOFGroupID": np.int64,
              "NextSubhaloInFOFGroupID": np.int64, "TreeID": np.int64, "SnapNum": np.int16,
              "SubfindID": np.int32, "NumParticles": np.uint32, "Mass": np.float32,
              "MassHistory": np.float32, "SubhaloMassType": np.float32,
              "SubhaloLenType": np.int32, "Group_M_Crit200": np.float32}
    for name, dtype in dtypes.items():
        assert trees[name].dtype == dtype, name
    for snap in (91, 99):
        here = trees["SnapNum"] == snap
        cat = il.groupcat.loadSubhalos(base, snap, fields=["SubhaloMassType", "SubhaloLenType",
                                                           "SubhaloGrNr"])
        m200 = il.groupcat.loadHalos(base, snap, fields=["Group_M_Crit200"])
        assert here.sum() == cat["count"]  # every demo subhalo has dark matter: all in trees
        sub = trees["SubfindID"][here]
        np.testing.assert_array_equal(trees["SubhaloMassType"][here], cat["SubhaloMassType"][sub])
        np.testing.assert_array_equal(trees["Mass"][here], cat["SubhaloMassType"][sub, 1])
        np.testing.assert_array_equal(trees["NumParticles"][here], cat["SubhaloLenType"][sub, 1])
        np.testing.assert_array_equal(trees["Group_M_Crit200"][here],
                                      m200[cat["SubhaloGrNr"][sub]])


# ---------------------------------------------------------------------------------------------
# A hand-built tree: off the main branch, a skipped snapshot, several roots, two files
# ---------------------------------------------------------------------------------------------

# file 0, tree 0 (TreeID 0), depth-first:   A(99,0) <- B(98,0) <- D(97,0)   main branch
#                                            A      <- C(98,1) <- E(97,2)   off the main branch
#                                            A      <- F(97,1)              skips snapshot 98
#   second root of the same FoF tree:        G(99,1) <- H(98,2) <- I(97,3)
#   a branch that ends at 98:                J(98,3)
# file 1, tree 0 (TreeID 1e16):              K(99,2) <- L(98,4) <- M(97,5)
# subhalo 4 of snapshot 97 is in no tree.
F1 = 10**16
HAND_ROWS = [  # SubhaloID, SnapNum, SubfindID, Descendant, FirstProg, NextProg, LastProg,
    #           MainLeaf, RootDesc, TreeID
    [0, 99, 0, -1, 1, -1, 5, 2, 0, 0],              # A
    [1, 98, 0, 0, 2, 3, 2, 2, 0, 0],                # B
    [2, 97, 0, 1, -1, -1, 2, 2, 0, 0],              # D
    [3, 98, 1, 0, 4, 5, 4, 4, 0, 0],                # C
    [4, 97, 2, 3, -1, -1, 4, 4, 0, 0],              # E
    [5, 97, 1, 0, -1, -1, 5, 5, 0, 0],              # F
    [6, 99, 1, -1, 7, -1, 8, 8, 6, 0],              # G
    [7, 98, 2, 6, 8, -1, 8, 8, 6, 0],               # H
    [8, 97, 3, 7, -1, -1, 8, 8, 6, 0],              # I
    [9, 98, 3, -1, -1, -1, 9, 9, 9, 0],             # J
    [F1, 99, 2, -1, F1 + 1, -1, F1 + 2, F1 + 2, F1, F1],          # K
    [F1 + 1, 98, 4, F1, F1 + 2, -1, F1 + 2, F1 + 2, F1, F1],      # L
    [F1 + 2, 97, 5, F1 + 1, -1, -1, F1 + 2, F1 + 2, F1, F1],      # M
]
HAND_COLUMNS = ("SubhaloID", "SnapNum", "SubfindID", "DescendantID", "FirstProgenitorID",
                "NextProgenitorID", "LastProgenitorID", "MainLeafProgenitorID",
                "RootDescendantID", "TreeID")
HAND_N_SUBHALOS = {97: 6, 98: 5, 99: 3}


def write_hand_built(sim: Path) -> str:
    """Write the hand-built trees and offsets files; returns the basePath."""
    base = sim / "output"
    base.mkdir(parents=True)
    table = np.array(HAND_ROWS, dtype=np.int64)
    tree_dir = sim / "postprocessing" / "trees" / "SubLink"
    tree_dir.mkdir(parents=True)
    for k, rows in enumerate((slice(0, 10), slice(10, 13))):
        with h5py.File(tree_dir / f"tree_extended.{k}.hdf5", "w") as fh:
            for c, name in enumerate(HAND_COLUMNS):
                dtype = {"SnapNum": np.int16, "SubfindID": np.int32}.get(name, np.int64)
                fh[name] = table[rows, c].astype(dtype)
    offsets = sim / "postprocessing" / "offsets"
    offsets.mkdir(parents=True)
    for snap, n in HAND_N_SUBHALOS.items():
        row, sid, last = (np.full(n, -1, np.int64) for _ in range(3))
        for r, entry in enumerate(HAND_ROWS):
            if entry[1] == snap:
                row[entry[2]], sid[entry[2]], last[entry[2]] = r, entry[0], entry[6]
        with h5py.File(offsets / f"offsets_{snap:03d}.hdf5", "w") as fh:
            fh["FileOffsets/Subhalo"] = np.zeros(1, np.int64)
            fh["Subhalo/SubLink/RowNum"] = row
            fh["Subhalo/SubLink/SubhaloID"] = sid
            fh["Subhalo/SubLink/LastProgenitorID"] = last
    return str(base)


@pytest.mark.parametrize(("snap", "target", "expected"), [
    (97, 99, [0, 0, 0, 1, -1, 2]),      # D, F (skips 98), E (off the main branch), I, none, M
    (97, 98, [0, -1, 1, 2, -1, 4]),     # F jumps from 97 straight past 98
    (98, 99, [0, 0, 1, -1, 2]),         # J's branch ends at 98
])
def test_hand_built_tree_against_brute_force_and_load_tree(tmp_path, snap, target, expected):
    base = write_hand_built(tmp_path / "sim")
    assert has_sublink_trees(base, snap)
    ids = np.arange(HAND_N_SUBHALOS[snap])
    got = sublink_descendants(base, snap, ids, target, progress=False)
    trees = read_trees(base)
    assert got.tolist() == expected
    assert got.tolist() == [brute_descendant(trees, snap, int(i), target) for i in ids]
    assert got.tolist() == [mdb_descendant(base, snap, int(i), target) for i in ids]


def test_hand_built_tree_reads_as_tng_through_illustris_python(tmp_path):
    base = write_hand_built(tmp_path / "sim")
    mpb = load_tree(base, 99, 0, fields=["SnapNum", "SubfindID"], onlyMPB=True)
    assert list(zip(mpb["SnapNum"], mpb["SubfindID"], strict=True)) == [(99, 0), (98, 0), (97, 0)]
    full = load_tree(base, 99, 0, fields=["SubhaloID"])
    assert full.tolist() == list(range(6))  # A's subtree, not G's branch
    # E (97, 2) is off A's main branch: onlyMDB returns every row from A down to E
    assert load_tree(base, 97, 2, fields=["SubhaloID"], onlyMDB=True).tolist() == [0, 1, 2, 3, 4]
    assert load_tree(base, 97, 4, fields=["SubhaloID"]) is None


# ---------------------------------------------------------------------------------------------
# The writer on random forests: skipped snapshots, early ends, several files
# ---------------------------------------------------------------------------------------------


def test_writer_on_random_forests_matches_brute_force(tmp_path):
    rng = np.random.default_rng(7)
    snaps = [10, 11, 12, 13]
    n_sub = {s: int(rng.integers(8, 14)) for s in snaps}
    catalogs, nodes = {}, []
    for s in snaps:
        grnr = np.sort(rng.integers(0, 4, n_sub[s]))
        mass = np.zeros((n_sub[s], 6), np.float32)
        mass[:, 1] = rng.uniform(1.0, 10.0, n_sub[s])
        catalogs[s] = ({"GroupNsubs": np.bincount(grnr, minlength=4).astype(np.int32)},
                       {"SubhaloMassType": mass, "SubhaloGrNr": grnr.astype(np.int32),
                        "SubhaloLenType": np.ones((n_sub[s], 6), np.int32)})
        nodes += [(s, i) for i in range(n_sub[s]) if rng.uniform() > 0.1]  # a few in no tree
    index = {node: k for k, node in enumerate(nodes)}
    descendant = np.full(len(nodes), -1)
    for k, (s, _) in enumerate(nodes):
        later = [n for n in nodes if n[0] == s + 1] if rng.uniform() > 0.15 else [
            n for n in nodes if n[0] == s + 2]  # sometimes skip a snapshot
        if later and rng.uniform() > 0.1:  # sometimes the branch ends early
            descendant[k] = index[later[int(rng.integers(len(later)))]]
    sim = tmp_path / "sim"
    (sim / "output").mkdir(parents=True)
    (sim / "postprocessing" / "offsets").mkdir(parents=True)
    for s in snaps:
        with h5py.File(sim / "postprocessing" / "offsets" / f"offsets_{s:03d}.hdf5", "w") as fh:
            fh["FileOffsets/Subhalo"] = np.zeros(1, np.int64)
    paths = write_sublink_trees(sim, np.array([s for s, _ in nodes]),
                                np.array([i for _, i in nodes]), descendant, catalogs, n_files=3)
    base = str(sim / "output")
    assert paths == [p.resolve() for p in sublink_tree_paths(base)] and len(paths) >= 2
    trees = read_trees(base)
    assert len(trees["SubhaloID"]) == len(nodes)
    check_sublink_invariants(trees)
    check_offsets(base, trees, snaps)
    for k, (s, i) in enumerate(nodes):  # DescendantID reproduces the links given
        row = np.flatnonzero((trees["SnapNum"] == s) & (trees["SubfindID"] == i))[0]
        want = nodes[descendant[k]] if descendant[k] >= 0 else None
        d = trees["DescendantID"][row]
        got = None if d == -1 else tuple(
            int(trees[c][trees["SubhaloID"] == d][0]) for c in ("SnapNum", "SubfindID"))
        assert got == want
    for snap, target in ((10, 13), (10, 12), (11, 13), (12, 13)):
        ids = np.arange(n_sub[snap])
        got = sublink_descendants(base, snap, ids, target, progress=False)
        assert got.tolist() == [brute_descendant(trees, snap, int(i), target) for i in ids]
        assert got.tolist() == [mdb_descendant(base, snap, int(i), target) for i in ids]
        assert (got >= 0).any()


# ---------------------------------------------------------------------------------------------
# Missing, truncated and inconsistent files; merger_trees=False
# ---------------------------------------------------------------------------------------------


def test_missing_trees_or_offsets_give_clear_errors(tmp_path):
    base = write_hand_built(tmp_path / "sim")
    tree_dir = tmp_path / "sim" / "postprocessing" / "trees" / "SubLink"
    assert not has_sublink_trees(base, 96)  # no offsets file for this snapshot
    with pytest.raises(SimBridgeInputError, match="offsets file"):
        sublink_descendants(base, 96, [0], 99)
    assert not has_sublink_trees(base, 99, tree_name="SubLink_gal")
    with h5py.File(tmp_path / "sim" / "postprocessing" / "offsets" / "offsets_098.hdf5",
                   "a") as fh:
        del fh["Subhalo/SubLink"]
    assert not has_sublink_trees(base, 98)
    with pytest.raises(SimBridgeInputError, match="does not locate subhalos"):
        sublink_descendants(base, 98, [0], 99)
    with pytest.raises(SimBridgeInputError, match="offsets file lists 6 subhalos"):
        sublink_descendants(base, 97, [6], 99)
    # a truncated tree file
    data = (tree_dir / "tree_extended.1.hdf5").read_bytes()
    (tree_dir / "tree_extended.1.hdf5").write_bytes(data[: len(data) // 2])
    with pytest.raises(SimBridgeInputError, match="cannot be opened") as err:
        sublink_descendants(base, 97, [0, 5], 99)
    assert "tree_extended.1.hdf5" in str(err.value) and "re-download" in str(err.value)
    # a gap in the numbering, then no trees at all
    (tree_dir / "tree_extended.0.hdf5").unlink()
    assert not has_sublink_trees(base, 97)
    with pytest.raises(SimBridgeInputError, match="tree file 0 is missing"):
        sublink_descendants(base, 97, [0], 99)
    (tree_dir / "tree_extended.1.hdf5").unlink()
    assert not has_sublink_trees(base, 97)
    with pytest.raises(SimBridgeInputError, match="no SubLink merger trees found"):
        sublink_descendants(base, 97, [0], 99)


def test_missing_last_tree_file_is_named_as_a_partial_download(tmp_path):
    base = write_hand_built(tmp_path / "sim")
    (tmp_path / "sim/postprocessing/trees/SubLink/tree_extended.1.hdf5").unlink()
    assert sublink_descendants(base, 97, [0], 99).tolist() == [0]  # rows in file 0 still work
    with pytest.raises(SimBridgeInputError, match="probably missing") as err:
        sublink_descendants(base, 97, [5], 99)  # M's tree is in the missing file
    assert "tree_extended.0-0.hdf5" in str(err.value)


def test_offsets_that_disagree_with_the_trees_are_caught(tmp_path):
    base = write_hand_built(tmp_path / "sim")
    with h5py.File(tmp_path / "sim" / "postprocessing" / "offsets" / "offsets_097.hdf5",
                   "a") as fh:
        fh["Subhalo/SubLink/RowNum"][0] = 3  # points at C's row, which holds SubhaloID 3
    with pytest.raises(SimBridgeInputError, match="inconsistent merger trees"):
        sublink_descendants(base, 97, [0], 99)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def offsets_datasets(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with h5py.File(path, "r") as fh:
        fh.visititems(lambda name, obj: out.update({name: obj[()].tobytes()})
                      if isinstance(obj, h5py.Dataset) else None)
    return out


def test_merger_trees_off_writes_no_trees_and_leaves_the_rest_identical(tmp_path):
    on = generate_demo_universe(tmp_path / "on" / "sim", TINY, 5)
    off = generate_demo_universe(tmp_path / "off" / "sim", {**TINY, "merger_trees": False}, 5)
    assert off["sublink_tree_files"] == [] and len(on["sublink_tree_files"]) == 2
    assert not (tmp_path / "off" / "sim" / "postprocessing" / "trees").exists()
    assert not has_sublink_trees(off["base_path"], 99)
    with pytest.raises(SimBridgeInputError, match="no SubLink merger trees"):
        sublink_descendants(off["base_path"], 91, [0], 99)
    assert on["galaxies"] == off["galaxies"]
    d_on, d_off = digests(tmp_path / "on" / "sim"), digests(tmp_path / "off" / "sim")
    trees = {k for k in d_on if k.startswith("postprocessing/trees/")}
    assert len(trees) == 2 and set(d_on) - trees == set(d_off)
    for name in d_off:
        if "offsets/" in name:  # the only other difference: the SubLink offsets entries
            with_trees = offsets_datasets(tmp_path / "on" / "sim" / name)
            assert {k: v for k, v in with_trees.items() if "SubLink" not in k} == \
                offsets_datasets(tmp_path / "off" / "sim" / name)
            assert {k for k in with_trees if "SubLink" in k} == {
                "Subhalo/SubLink/RowNum", "Subhalo/SubLink/SubhaloID",
                "Subhalo/SubLink/LastProgenitorID"}
        else:
            assert d_on[name] == d_off[name], name


def test_merger_trees_parameter_is_checked(tmp_path):
    from simbridge.errors import SimBridgeConfigError

    with pytest.raises(SimBridgeConfigError, match="merger_trees must be true or false"):
        generate_demo_universe(tmp_path / "sim", {**TINY, "merger_trees": "yes"}, 1)
    backwards = [{"snapshot": 99, "redshift": 0.1}, {"snapshot": 91, "redshift": 0.0}]
    with pytest.raises(SimBridgeConfigError, match="increase as redshift decreases"):
        generate_demo_universe(tmp_path / "sim", {**TINY, "snapshots": backwards}, 1)

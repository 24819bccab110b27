"""The demo universe must be indistinguishable from the TNG archive for illustris_python and h5py.

Every property is checked through the real library (``illustris_python``) or plain h5py on the
written files, against brute-force references computed here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
import pytest
from scipy import stats

from simbridge.errors import SimBridgeConfigError
from simbridge.sims.tng import fof_offsets
from simbridge.sims.tng_demo import (
    DEFAULT_DEMO_PARAMS,
    generate_demo_universe,
    write_tng_snapshot,
)
from simbridge.units import code_mass_to_msun

SEED = 20261122
SMALL = {"n_galaxies": 16}
SNAPS = (99, 91)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    sim = tmp_path_factory.mktemp("demo") / "TNG-demo"
    return sim, generate_demo_universe(sim, SMALL, SEED)


def base_of(sim: Path) -> str:
    return str(sim / "output")


def snap_header(sim: Path, snap: int) -> dict:
    with h5py.File(sim / "output" / f"snapdir_{snap:03d}" / f"snap_{snap:03d}.0.hdf5") as fh:
        return dict(fh["Header"].attrs)


def offsets(sim: Path, snap: int, kind: str = "Subhalo") -> np.ndarray:
    with h5py.File(sim / "postprocessing" / "offsets" / f"offsets_{snap:03d}.hdf5") as fh:
        return fh[f"{kind}/SnapByType"][()]


def stellar_assembly(sim: Path, snap: int) -> dict[str, np.ndarray]:
    path = sim / "postprocessing" / "StellarAssembly" / f"stars_{snap:03d}.hdf5"
    with h5py.File(path) as fh:
        return {k: fh[k][()] for k in fh}


def min_image(d: np.ndarray, box: float) -> np.ndarray:
    """Minimum-image separation, written independently of simbridge.units."""
    return d - box * np.round(d / box)


def load_part(base: str, snap: int, sub_id: int, ptype: str, fields: list[str]) -> dict:
    """loadSubhalo as a dict: one field comes back as a bare array, none as {'count': 0}."""
    out = il.snapshot.loadSubhalo(base, snap, sub_id, ptype, fields=fields)
    if isinstance(out, np.ndarray):
        return {"count": len(out), fields[0]: out}
    return out


def brute_half_mass_radius(r: np.ndarray, m: np.ndarray) -> float:
    """Loop over particles sorted by radius until half the mass is enclosed."""
    total, cum = m.sum(), 0.0
    for i in np.argsort(r, kind="stable"):
        cum += m[i]
        if cum >= 0.5 * total:
            return float(r[i])
    return 0.0


# ---------------------------------------------------------------------------------------------
# Reading through illustris_python
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap", SNAPS)
def test_catalog_and_particles_read_through_illustris_python(demo, snap):
    sim, summary = demo
    base = base_of(sim)
    hdr = il.groupcat.loadHeader(base, snap)
    entry = next(s for s in summary["snapshots"] if s["snapshot"] == snap)
    subs = il.groupcat.loadSubhalos(base, snap, fields=["SubhaloLenType", "SubhaloGrNr"])
    halos = il.groupcat.loadHalos(base, snap, fields=["GroupLenType", "GroupNsubs"])
    assert subs["count"] == hdr["Nsubgroups_Total"] == entry["n_subhalos"]
    assert halos["count"] == hdr["Ngroups_Total"] == entry["n_groups"]
    assert hdr["NumFiles"] == DEFAULT_DEMO_PARAMS["n_catalog_chunks"]
    for sid in range(subs["count"]):
        stars = load_part(base, snap, sid, "stars", ["ParticleIDs", "Masses"])
        assert stars["count"] == subs["SubhaloLenType"][sid, 4]
        single = il.groupcat.loadSingle(base, snap, subhaloID=sid)
        assert np.array_equal(single["SubhaloLenType"], subs["SubhaloLenType"][sid])
    for gid in range(halos["count"]):
        for ptype, t in (("gas", 0), ("dm", 1), ("stars", 4)):
            got = il.snapshot.loadHalo(base, snap, gid, ptype, fields=["ParticleIDs"])
            count = got["count"] if isinstance(got, dict) else len(got)
            assert count == halos["GroupLenType"][gid, t]
    # the snapshot header agrees with the particle counts in the chunks
    header = snap_header(sim, snap)
    assert list(il.snapshot.getNumPart(header)) == entry["num_part_total"]


@pytest.mark.parametrize("snap", SNAPS)
def test_subhalo_straddling_a_snapshot_chunk_boundary_loads_whole(demo, snap):
    sim, _ = demo
    base = base_of(sim)
    with h5py.File(sim / "postprocessing" / "offsets" / f"offsets_{snap:03d}.hdf5") as fh:
        chunk_starts = fh["FileOffsets/SnapByType"][:, 4]
        sub_off = fh["Subhalo/SnapByType"][:, 4]
    lens = il.groupcat.loadSubhalos(base, snap, fields=["SubhaloLenType"])[:, 4]
    straddling = [s for s in range(len(lens))
                  if any(sub_off[s] < b < sub_off[s] + lens[s] for b in chunk_starts[1:])]
    assert straddling, "no subhalo crosses a snapshot chunk boundary"
    all_ids = il.snapshot.loadSubset(base, snap, "stars", fields=["ParticleIDs"])
    for s in straddling:
        ids = il.snapshot.loadSubhalo(base, snap, s, "stars", fields=["ParticleIDs"])
        assert np.array_equal(ids, all_ids[sub_off[s]:sub_off[s] + lens[s]])
    # catalog chunks split groups and subhalos at different places, with unequal counts
    n_g, n_s = [], []
    for k in range(DEFAULT_DEMO_PARAMS["n_catalog_chunks"]):
        path = sim / "output" / f"groups_{snap:03d}" / f"fof_subhalo_tab_{snap:03d}.{k}.hdf5"
        with h5py.File(path) as fh:
            n_g.append(int(fh["Header"].attrs["Ngroups_ThisFile"]))
            n_s.append(int(fh["Header"].attrs["Nsubgroups_ThisFile"]))
    assert len(set(n_g)) > 1 and n_g != n_s


@pytest.mark.parametrize("snap", SNAPS)
def test_catalog_fields_match_member_particles(demo, snap):
    sim, _ = demo
    base = base_of(sim)
    header = snap_header(sim, snap)
    box, a, m_dm = header["BoxSize"], header["Time"], header["MassTable"][1]
    subs = il.groupcat.loadSubhalos(base, snap, fields=[
        "SubhaloMassType", "SubhaloHalfmassRadType", "SubhaloPos", "SubhaloVel", "SubhaloLenType"])
    for sid in range(subs["count"]):
        st = load_part(base, snap, sid, "stars", ["Coordinates", "Masses", "Velocities",
                                                   "GFM_StellarFormationTime"])
        star = st["GFM_StellarFormationTime"] > 0
        m = st["Masses"][star].astype(np.float64)
        # wind cells count as gas in SubhaloMassType (TNG convention), not as stars
        assert subs["SubhaloMassType"][sid, 4] == pytest.approx(m.sum(), rel=1e-5)
        d = min_image(st["Coordinates"][star] - subs["SubhaloPos"][sid].astype(np.float64), box)
        r = np.sqrt((d**2).sum(axis=1))
        r_half = brute_half_mass_radius(r, m)
        assert subs["SubhaloHalfmassRadType"][sid, 4] == pytest.approx(r_half, rel=1e-5)
        centre_offset = np.linalg.norm((m[:, None] * d).sum(axis=0) / m.sum())
        assert centre_offset < r_half
        # SubhaloVel: mass-weighted velocity of all members (all types) times sqrt(a)
        mv, mtot = np.zeros(3), 0.0
        gas = load_part(base, snap, sid, "gas", ["Masses", "Velocities"])
        dm = load_part(base, snap, sid, "dm", ["Velocities"])
        for mass, vel in ((st["Masses"], st["Velocities"]),
                          (gas.get("Masses"), gas.get("Velocities")),
                          (np.full(dm["count"], m_dm), dm.get("Velocities"))):
            if mass is None or vel is None or len(mass) == 0:
                continue
            mv += (mass.astype(np.float64)[:, None] * vel).sum(axis=0)
            mtot += mass.astype(np.float64).sum()
        expected = mv / mtot * np.sqrt(a)
        assert np.allclose(subs["SubhaloVel"][sid], expected, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("snap", SNAPS)
def test_stellar_assembly_matches_snapshot_order_and_marks_wind(demo, snap):
    sim, _ = demo
    base = base_of(sim)
    sa = stellar_assembly(sim, snap)
    n4 = int(il.snapshot.getNumPart(snap_header(sim, snap))[4])
    assert len(sa["InSitu"]) == n4
    for name in ("ParticleID", "SubfindID", "AfterInfall", "AccretionOrigin", "MergerMassRatio",
                 "SubfindIDAtFormation", "SnapNumAtFormation", "DistanceAtFormation"):
        assert len(sa[name]) == n4
    stars = il.snapshot.loadSubset(base, snap, "stars",
                                   fields=["ParticleIDs", "GFM_StellarFormationTime"])
    assert np.array_equal(sa["ParticleID"], stars["ParticleIDs"])
    wind = stars["GFM_StellarFormationTime"] <= 0
    assert wind.any()
    assert (sa["InSitu"][wind] == -1).all()
    assert np.isin(sa["InSitu"][~wind], (0, 1)).all()
    # wind cells sit inside galaxies: within a subhalo's PartType4 range
    lens = il.groupcat.loadSubhalos(base, snap, fields=["SubhaloLenType"])[:, 4]
    off = offsets(sim, snap)[:, 4]
    owner = np.full(n4, -1)
    for s in range(len(lens)):
        owner[off[s]:off[s] + lens[s]] = s
    assert (owner[wind] >= 0).all()
    assert np.array_equal(owner, sa["SubfindID"])
    winds_per_subhalo = np.bincount(owner[wind], minlength=len(lens))
    centrals = il.groupcat.loadHalos(base, snap, fields=["GroupFirstSub"])
    assert (winds_per_subhalo[centrals] > 0).all()
    # wind cells are fast outflows with non-trivial mass
    wind_parts = il.snapshot.loadSubset(base, snap, "stars", fields=["Masses"])[wind]
    assert (wind_parts > 0).all()


def test_box_edge_and_mass_cut(demo):
    sim, summary = demo
    base = base_of(sim)
    header = snap_header(sim, 99)
    box, h = header["BoxSize"], header["HubbleParam"]
    subs = il.groupcat.loadSubhalos(base, 99, fields=["SubhaloMassType", "SubhaloPos"])
    centrals = il.groupcat.loadHalos(base, 99, fields=["GroupFirstSub"])
    mstar = code_mass_to_msun(subs["SubhaloMassType"][centrals, 4], h)
    assert (mstar < 1e10).any() and (mstar > 1e10).any()
    straddlers = 0
    for sid in centrals:
        x = il.snapshot.loadSubhalo(base, 99, int(sid), "stars", fields=["Coordinates"])
        near_low, near_high = x < 0.05 * box, x > 0.95 * box
        straddlers += bool((near_low.any(axis=0) & near_high.any(axis=0)).any())
    assert straddlers >= 1
    assert any(g["straddles_box_edge"] for g in summary["galaxies"])


def _central_star_populations(sim: Path, snap: int):
    """Per central: log M*, and its in-situ / ex-situ star properties."""
    base = base_of(sim)
    header = snap_header(sim, snap)
    box, h = header["BoxSize"], header["HubbleParam"]
    subs = il.groupcat.loadSubhalos(base, snap, fields=["SubhaloPos", "SubhaloVel"])
    centrals = il.groupcat.loadHalos(base, snap, fields=["GroupFirstSub"])
    sa = stellar_assembly(sim, snap)
    off = offsets(sim, snap)[:, 4]
    out = []
    for sid in centrals:
        st = il.snapshot.loadSubhalo(base, snap, int(sid), "stars", fields=[
            "Coordinates", "Velocities", "Masses", "GFM_StellarFormationTime",
            "GFM_Metallicity"])
        insitu = sa["InSitu"][off[sid]:off[sid] + st["count"]]
        star = st["GFM_StellarFormationTime"] > 0
        d = min_image(st["Coordinates"] - subs["SubhaloPos"][sid].astype(np.float64), box)
        v = st["Velocities"] * np.sqrt(header["Time"]) - subs["SubhaloVel"][sid]
        m = st["Masses"].astype(np.float64)
        ins = star & (insitu == 1)
        # disk axis from the in-situ angular momentum
        axis = (m[ins, None] * np.cross(d[ins], v[ins])).sum(axis=0)
        axis /= np.linalg.norm(axis)
        out.append({
            "log_mstar": np.log10(code_mass_to_msun(m[star].sum(), h)),
            "exsitu_fraction": m[star & (insitu == 0)].sum() / m[star].sum(),
            "populations": {
                flag: {
                    "a_form": st["GFM_StellarFormationTime"][sel],
                    "Z": st["GFM_Metallicity"][sel],
                    "r": np.linalg.norm(d[sel], axis=1),
                    "v_axis": v[sel] @ axis,
                }
                for flag, sel in ((1, ins), (0, star & (insitu == 0)))
            },
        })
    return out


def test_exsitu_stars_are_older_metal_poorer_extended_and_hotter(demo):
    sim, _ = demo
    gals = _central_star_populations(sim, 99)
    logm = np.array([g["log_mstar"] for g in gals])
    fex = np.array([g["exsitu_fraction"] for g in gals])
    assert stats.spearmanr(logm, fex).statistic > 0
    assert (fex > 0).all() and (fex < 1).all()
    checks = []
    for g in gals:
        ins, exs = g["populations"][1], g["populations"][0]
        if len(exs["r"]) < 20:
            continue
        checks.append([
            np.median(exs["a_form"]) < np.median(ins["a_form"]),
            np.median(exs["Z"]) < np.median(ins["Z"]),
            np.median(exs["r"]) > np.median(ins["r"]),
            np.std(exs["v_axis"]) > np.std(ins["v_axis"]),
        ])
    checks = np.array(checks)
    assert len(checks) >= 8
    assert checks.all(axis=0).tolist() == [True] * 4, checks.mean(axis=0)


def test_progenitors_share_particle_ids(demo):
    sim, _ = demo
    base = base_of(sim)
    h = snap_header(sim, 99)["HubbleParam"]
    a91 = snap_header(sim, 91)["Time"]
    assert a91 == pytest.approx(1 / 1.1)
    subs99 = il.groupcat.loadSubhalos(base, 99, fields=["SubhaloMassType"])
    centrals = il.groupcat.loadHalos(base, 99, fields=["GroupFirstSub"])
    stars91 = il.snapshot.loadSubset(base, 91, "stars",
                                     fields=["ParticleIDs", "GFM_StellarFormationTime"])
    sa91 = stellar_assembly(sim, 91)
    owner91 = sa91["SubfindID"]
    n_sub91 = il.groupcat.loadHeader(base, 91)["Nsubgroups_Total"]
    assert (stars91["GFM_StellarFormationTime"] < a91).all()
    n_checked = 0
    for sid in centrals:
        if code_mass_to_msun(subs99[sid, 4], h) < 1e10:
            continue
        st = il.snapshot.loadSubhalo(base, 99, int(sid), "stars",
                                     fields=["ParticleIDs", "GFM_StellarFormationTime"])
        ids = st["ParticleIDs"][st["GFM_StellarFormationTime"] > 0]
        shared = np.isin(stars91["ParticleIDs"], ids) & (owner91 >= 0)
        counts = np.bincount(owner91[shared], minlength=n_sub91)
        assert counts.max() > 0.5 * len(ids)
        n_checked += 1
    assert n_checked >= 5
    # stars accreted after z=0.1 sit in a satellite then, in situ to it, and ex situ at z=0
    sa99 = stellar_assembly(sim, 99)
    exsitu99 = set(sa99["ParticleID"][sa99["InSitu"] == 0].tolist())
    satellites = set(range(n_sub91)) - set(il.groupcat.loadHalos(base, 91,
                                                                 fields=["GroupFirstSub"]))
    merging = [s for s in satellites
               if (ids := sa91["ParticleID"][owner91 == s]).size
               and all(i in exsitu99 for i in ids.tolist())]
    assert merging, "no satellite at z=0.1 holds stars that are ex situ at z=0"
    for s in merging:
        assert (sa91["InSitu"][owner91 == s] == 1).all()


def test_dtypes_match_the_archive(demo):
    sim, _ = demo
    with h5py.File(sim / "output" / "snapdir_099" / "snap_099.0.hdf5") as fh:
        hdr = fh["Header"].attrs
        assert hdr["NumPart_ThisFile"].dtype == np.int32
        assert hdr["NumPart_Total"].dtype == np.uint32
        assert hdr["NumPart_Total_HighWord"].dtype == np.uint32
        assert hdr["NumFilesPerSnapshot"].dtype == np.int32
        assert hdr["MassTable"].dtype == np.float64 and hdr["MassTable"].shape == (6,)
        assert hdr["MassTable"][1] > 0 and "Masses" not in fh["PartType1"]
        assert isinstance(hdr["Git_commit"], bytes)
        p4 = fh["PartType4"]
        assert p4["Coordinates"].dtype == np.float64
        for name in ("Velocities", "Masses", "GFM_InitialMass", "GFM_Metallicity",
                     "GFM_StellarFormationTime", "GFM_StellarPhotometrics"):
            assert p4[name].dtype == np.float32, name
        assert p4["GFM_StellarPhotometrics"].shape[1] == 8
        assert p4["ParticleIDs"].dtype == np.uint64
        assert (p4["GFM_InitialMass"][()] >= p4["Masses"][()]).all()
        assert p4["Coordinates"].attrs["h_scaling"] == -1.0
    with h5py.File(sim / "output" / "groups_099" / "fof_subhalo_tab_099.0.hdf5") as fh:
        for key in ("Ngroups_ThisFile", "Ngroups_Total", "Nsubgroups_ThisFile",
                    "Nsubgroups_Total", "Nids_ThisFile", "Nids_Total", "NumFiles"):
            assert fh["Header"].attrs[key].dtype == np.int32, key
        sub, grp = fh["Subhalo"], fh["Group"]
        expected = {"SubhaloLenType": np.int32, "SubhaloPos": np.float32,
                    "SubhaloMassType": np.float32, "SubhaloHalfmassRadType": np.float32,
                    "SubhaloVel": np.float32, "SubhaloGrNr": np.int32,
                    "SubhaloIDMostbound": np.uint64, "SubhaloFlag": np.uint8,
                    "SubhaloSFR": np.float32, "SubhaloStellarPhotometrics": np.float32}
        for name, dtype in expected.items():
            assert sub[name].dtype == dtype, name
        for name, dtype in {"GroupLenType": np.int32, "GroupFirstSub": np.int32,
                            "GroupNsubs": np.int32, "GroupPos": np.float32,
                            "Group_M_Crit200": np.float32, "Group_R_Crit200": np.float32}.items():
            assert grp[name].dtype == dtype, name
    with h5py.File(sim / "postprocessing" / "offsets" / "offsets_099.hdf5") as fh:
        assert fh["FileOffsets/SnapByType"].shape == (DEFAULT_DEMO_PARAMS["n_snapshot_chunks"], 6)
        for name in ("FileOffsets/Group", "FileOffsets/Subhalo", "FileOffsets/SnapByType",
                     "Group/SnapByType", "Subhalo/SnapByType"):
            assert fh[name].dtype == np.int64, name
    sa = stellar_assembly(sim, 99)
    for name, dtype in {"ParticleID": np.uint64, "SubfindID": np.int32, "InSitu": np.int8,
                        "AfterInfall": np.int8, "AccretionOrigin": np.int8,
                        "MergerMassRatio": np.float32, "SubfindIDAtFormation": np.int32,
                        "SnapNumAtFormation": np.int16,
                        "DistanceAtFormation": np.float32}.items():
        assert sa[name].dtype == dtype, name


# ---------------------------------------------------------------------------------------------
# Determinism and atomic writes
# ---------------------------------------------------------------------------------------------

TINY = {"n_galaxies": 4, "star_particle_mass_msun": 4.0e7}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    first = tree_digest(Path(generate_demo_universe(tmp_path / "a" / "sim", TINY, 5)["sim_dir"]))
    second = tree_digest(Path(generate_demo_universe(tmp_path / "b" / "sim", TINY, 5)["sim_dir"]))
    other = tree_digest(Path(generate_demo_universe(tmp_path / "c" / "sim", TINY, 6)["sim_dir"]))
    assert first == second
    # per snapshot: chunks, catalogs, offsets, SA; plus two SubLink tree files
    assert len(first) == 2 * (3 + 2 + 1 + 1) + 2
    assert first.keys() == other.keys()
    assert first != other


def test_write_is_atomic_and_replaces_stale_trees(tmp_path):
    sim = tmp_path / "sim"
    stale_partial = tmp_path / "sim.partial"
    stale_partial.mkdir()
    (stale_partial / "junk.hdf5").write_bytes(b"junk")
    sim.mkdir()
    (sim / "old_file.txt").write_text("from an earlier run")
    summary = generate_demo_universe(sim, TINY, 1)
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    assert not (sim / "old_file.txt").exists()
    assert sorted(p.name for p in sim.iterdir()) == ["output", "postprocessing"]
    assert Path(summary["base_path"]) == sim / "output"
    # the workflow writes the summary as JSON; it must round-trip
    assert json.loads(json.dumps(summary)) == summary
    assert [s["snapshot"] for s in summary["snapshots"]] == [99, 91]
    assert all(set(g["central_subhalo_id"]) == {"99", "91"} for g in summary["galaxies"])


def test_unknown_demo_parameter_is_rejected(tmp_path):
    with pytest.raises(SimBridgeConfigError, match="n_galaxy"):
        generate_demo_universe(tmp_path / "sim", {"n_galaxy": 3}, 1)
    assert not (tmp_path / "sim.partial").exists()


# ---------------------------------------------------------------------------------------------
# Low-level writer on hand-made galaxies
# ---------------------------------------------------------------------------------------------

BOX = 1000.0


def hand_made(rng: np.random.Generator) -> dict:
    """Group 0: two subhalos + 1 fuzz DM; group 1: no subhalo, 2 DM; then outer fuzz."""
    centres = np.array([[2.0, 500.0, 500.0], [300.0, 300.0, 300.0], [700.0, 700.0, 700.0]])
    # stars: subhalo 0 (near the box edge, 40 stars incl. 3 wind), subhalo 1 (10 stars)
    x4 = np.vstack([centres[0] + rng.normal(0, 3, (40, 3)), centres[1] + rng.normal(0, 1, (10, 3))])
    sft = rng.uniform(0.2, 0.9, 50).astype(np.float32)
    sft[[5, 17, 30]] = -0.95  # wind cells
    n_dm = [20, 5, 0]  # subhalo 0, subhalo 1, (group 0 fuzz counted below)
    x1 = np.vstack([centres[0] + rng.normal(0, 10, (n_dm[0], 3)),
                    centres[1] + rng.normal(0, 3, (n_dm[1], 3)),
                    centres[0] + rng.normal(0, 30, (1, 3)),        # group 0 inner fuzz
                    centres[2] + rng.normal(0, 5, (2, 3)),         # group 1 (no subhalo)
                    rng.uniform(0, BOX, (3, 3))])                  # outer fuzz
    x0 = np.vstack([centres[0] + rng.normal(0, 4, (8, 3)), rng.uniform(0, BOX, (2, 3))])
    ids = rng.permutation(np.arange(1, 1 + 50 + len(x1) + len(x0))).astype(np.uint64)
    particles = {
        4: {"Coordinates": np.mod(x4, BOX), "Velocities": rng.normal(0, 50, (50, 3)),
            "Masses": rng.uniform(1e-4, 2e-4, 50), "ParticleIDs": ids[:50],
            "GFM_StellarFormationTime": sft, "GFM_Metallicity": np.full(50, 0.01),
            "GFM_StellarPhotometrics": rng.uniform(-8, -6, (50, 8))},
        1: {"Coordinates": np.mod(x1, BOX), "Velocities": rng.normal(0, 80, (len(x1), 3)),
            "ParticleIDs": ids[50:50 + len(x1)]},
        0: {"Coordinates": np.mod(x0, BOX), "Velocities": rng.normal(0, 30, (10, 3)),
            "Masses": np.full(10, 3e-4), "ParticleIDs": ids[50 + len(x1):]},
    }
    insitu = np.ones(50, dtype=np.int8)
    insitu[:12] = 0
    insitu[[5, 17, 30]] = -1
    return {
        "header": {"Time": 1.0, "Redshift": 0.0, "BoxSize": BOX, "HubbleParam": 0.7,
                   "Omega0": 0.3, "OmegaLambda": 0.7, "OmegaBaryon": 0.05,
                   "MassTable": [0, 5e-3, 0, 0, 0, 0]},
        "groups": {"GroupLenType": [[8, 26, 0, 0, 50, 0], [0, 2, 0, 0, 0, 0]],
                   "GroupNsubs": [2, 0]},
        "subhalos": {"SubhaloLenType": [[8, 20, 0, 0, 40, 0], [0, 5, 0, 0, 10, 0]]},
        "particles": particles,
        "insitu": insitu,
    }


def test_writer_on_hand_made_galaxies_derives_catalog_and_reads_back(tmp_path):
    made = hand_made(np.random.default_rng(3))
    out = tmp_path / "sim" / "output"
    write_tng_snapshot(out, 99, made["header"], made["groups"], made["subhalos"],
                       made["particles"], made["insitu"], n_snapshot_chunks=4,
                       n_catalog_chunks=3)
    base = str(out)
    halos = il.groupcat.loadHalos(base, 99, fields=["GroupLenType", "GroupFirstSub", "GroupNsubs"])
    assert halos["GroupFirstSub"].tolist() == [0, -1]
    n_groups_per_chunk = []
    for k in range(3):
        with h5py.File(out / "groups_099" / f"fof_subhalo_tab_099.{k}.hdf5") as fh:
            n_groups_per_chunk.append(int(fh["Header"].attrs["Ngroups_ThisFile"]))
            assert "Group" in fh and "Subhalo" in fh  # even when the chunk holds none
    assert 0 in n_groups_per_chunk
    subs = il.groupcat.loadSubhalos(base, 99, fields=[
        "SubhaloMassType", "SubhaloLenType", "SubhaloGrNr", "SubhaloWindMass", "SubhaloPos"])
    assert subs["SubhaloGrNr"].tolist() == [0, 0]
    p4 = made["particles"][4]
    wind = p4["GFM_StellarFormationTime"] <= 0
    m4 = np.asarray(p4["Masses"], dtype=np.float32)
    assert subs["SubhaloMassType"][0, 4] == pytest.approx(m4[:40][~wind[:40]].sum(), rel=1e-6)
    assert subs["SubhaloWindMass"][0] == pytest.approx(m4[wind].sum(), rel=1e-6)
    gas_mass = np.float32(3e-4) * 8
    assert subs["SubhaloMassType"][0, 0] == pytest.approx(gas_mass + m4[wind].sum(), rel=1e-6)
    assert subs["SubhaloMassType"][0, 1] == pytest.approx(20 * 5e-3, rel=1e-6)
    # the derived centre of the edge galaxy is periodic: near x = 2, not near the box middle
    assert min(subs["SubhaloPos"][0, 0], BOX - subs["SubhaloPos"][0, 0]) < 10
    for sid in range(2):
        got = il.snapshot.loadSubhalo(base, 99, sid, "stars", fields=["ParticleIDs"])
        assert len(got) == subs["SubhaloLenType"][sid, 4]
    fuzz = il.snapshot.loadHalo(base, 99, 1, "dm", fields=["ParticleIDs"])
    assert len(fuzz) == 2
    group_off, sub_off = fof_offsets(halos["GroupLenType"], halos["GroupNsubs"],
                                     subs["SubhaloLenType"])
    assert sub_off[1].tolist() == [8, 20, 0, 0, 40, 0]
    assert group_off[1].tolist() == [8, 26, 0, 0, 50, 0]
    sa = stellar_assembly(tmp_path / "sim", 99)
    assert sa["SubfindID"].tolist() == [0] * 40 + [1] * 10


def _break(made: dict, how: str) -> None:
    if how == "subhalos exceed group":
        made["subhalos"]["SubhaloLenType"][1][4] = 11
    elif how == "groups exceed particles":
        made["groups"]["GroupLenType"][1][1] = 10
    elif how == "dm masses with mass table":
        made["particles"][1]["Masses"] = np.ones(len(made["particles"][1]["ParticleIDs"]))
    elif how == "unwrapped coordinates":
        made["particles"][0]["Coordinates"][0, 0] = BOX + 1
    elif how == "duplicate ids":
        made["particles"][0]["ParticleIDs"][0] = made["particles"][4]["ParticleIDs"][0]
    elif how == "wind flagged in situ":
        made["insitu"][5] = 1
    elif how == "insitu length":
        made["insitu"] = made["insitu"][:-1]
    elif how == "grnr not fof order":
        made["subhalos"]["SubhaloGrNr"] = [1, 0]


@pytest.mark.parametrize("how", ["subhalos exceed group", "groups exceed particles",
                                 "dm masses with mass table", "unwrapped coordinates",
                                 "duplicate ids", "wind flagged in situ", "insitu length",
                                 "grnr not fof order"])
def test_writer_rejects_inconsistent_inputs(tmp_path, how):
    made = hand_made(np.random.default_rng(3))
    _break(made, how)
    with pytest.raises(ValueError):
        write_tng_snapshot(tmp_path / "output", 99, made["header"], made["groups"],
                           made["subhalos"], made["particles"], made["insitu"])


def test_default_universe_has_rare_but_present_high_exsitu_galaxies(tmp_path):
    """About 100 galaxies above 1e10 Msun; ex-situ fractions above 0.8 exist but are rare."""
    summary = generate_demo_universe(tmp_path / "sim", DEFAULT_DEMO_PARAMS, SEED)
    gals = summary["galaxies"]
    above = [g for g in gals if g["log10_stellar_mass_msun"] > 10.0]
    assert 70 <= len(above) <= 130
    high = [g for g in above if g["exsitu_mass_fraction"] > 0.8]
    assert 1 <= len(high) <= 0.1 * len(above)

"""TNG map extraction through illustris_python, against brute-force references.

A hand-made galaxy is written in the TNG layout with a != 1, h != 1, a non-TNG cosmology, a
centre on the periodic box corner, wind cells with huge velocities and a known systemic
velocity. Its maps, made by the full read path (catalog -> batched loadSubset -> maps), must
match maps computed here by brute force from the physical truth. Each convention (h, a,
sqrt(a), periodic wrapping, wind exclusion, header cosmology, SubhaloVel physical) breaks this
comparison when it is wrong.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM

from simbridge.extract.tng_maps import (
    assign_batches,
    extract_batch,
    read_ranges,
    write_galaxy_catalog,
)
from simbridge.sims.tng_demo import write_tng_snapshot

A, H, OM, OL, BOX = 0.5, 0.7, 0.3, 0.7, 1000.0  # z = 1, a cosmology unlike TNG's
SNAP = 50
CENTRE = np.array([998.0, 500.0, 1.5])  # ckpc/h: the galaxy straddles two box faces
V_SYS = np.array([120.0, -80.0, 45.0])  # physical km/s
NPIX = 16
CONFIG = {
    "seed": 7,
    "tng": {"simulation_name": "hand-made", "snapshots": [SNAP], "stellar_mass_min_msun": 1e9,
            "n_batches": 1, "max_read_gap_particles": 1000},
    "balancing": {"min_views": 3, "max_views": 3},
    "maps": {"npix": NPIX, "fov_half_mass_radii": 3.0, "min_star_particles": 10,
             "min_particles_per_pixel": 1},
}


def make_galaxy(rng: np.random.Generator, n_star: int, n_wind: int, mass_msun: float) -> dict:
    """Physical truth of one galaxy: offsets (kpc), peculiar velocities (km/s), masses..."""
    n = n_star + n_wind
    offsets = rng.normal(scale=3.0, size=(n, 3))
    vel = V_SYS + rng.normal(scale=60.0, size=(n, 3))
    vel[:, 0] += 150.0 * np.tanh(offsets[:, 1])  # some rotation
    mass = rng.uniform(0.5, 1.5, n)
    mass *= mass_msun / mass[:n_star].sum()
    aform = rng.uniform(0.05, A, n)
    insitu = rng.integers(0, 2, n).astype(np.int8)
    wind = np.arange(n) >= n_star
    offsets[wind] *= 0.1  # wind cells in the centre, flying out
    vel[wind] = V_SYS + rng.normal(scale=5000.0, size=(n_wind, 3))
    aform[wind] = -rng.uniform(0.1, 0.5, n_wind)
    insitu[wind] = -1
    return {"offsets_kpc": offsets, "vel_kms": vel, "mass_msun": mass, "aform": aform,
            "metallicity": rng.uniform(0.001, 0.03, n), "insitu": insitu, "wind": wind}


def write_hand_made_universe(base: Path, galaxies: list[dict], centres: list[np.ndarray]) -> None:
    """Each galaxy its own group with one subhalo, plus a few DM particles; code units by hand."""
    stars = {k: [] for k in ("Coordinates", "Velocities", "Masses", "GFM_InitialMass",
                             "GFM_StellarFormationTime", "GFM_Metallicity", "ParticleIDs")}
    dm_pos, dm_vel = [], []
    insitu, len_type = [], []
    next_id = 1
    for gal, centre in zip(galaxies, centres, strict=True):
        n = len(gal["mass_msun"])
        stars["Coordinates"].append((centre + gal["offsets_kpc"] * H / A) % BOX)
        stars["Velocities"].append(gal["vel_kms"] / np.sqrt(A))
        stars["Masses"].append(gal["mass_msun"] * H / 1e10)
        stars["GFM_InitialMass"].append(gal["mass_msun"] * H / 1e10 * 1.1)
        stars["GFM_StellarFormationTime"].append(gal["aform"])
        stars["GFM_Metallicity"].append(gal["metallicity"])
        stars["ParticleIDs"].append(np.arange(next_id, next_id + n, dtype=np.uint64))
        next_id += n
        dm_pos.append((centre + np.random.default_rng(0).normal(scale=5.0, size=(20, 3))) % BOX)
        dm_vel.append(np.tile(V_SYS / np.sqrt(A), (20, 1)))
        insitu.append(gal["insitu"])
        len_type.append([0, 20, 0, 0, n, 0])
    particles = {
        1: {"Coordinates": np.concatenate(dm_pos), "Velocities": np.concatenate(dm_vel),
            "ParticleIDs": np.arange(next_id, next_id + 20 * len(galaxies), dtype=np.uint64)},
        4: {k: np.concatenate(v) for k, v in stars.items()},
    }
    header = {"Time": A, "Redshift": 1 / A - 1, "BoxSize": BOX, "HubbleParam": H,
              "Omega0": OM, "OmegaLambda": OL, "OmegaBaryon": 0.05,
              "MassTable": [0, 1e-3, 0, 0, 0, 0]}
    len_type = np.array(len_type)
    write_tng_snapshot(
        base, SNAP, header,
        groups={"GroupLenType": len_type, "GroupNsubs": np.ones(len(galaxies), int)},
        subhalos={"SubhaloLenType": len_type,
                  "SubhaloPos": np.array(centres),
                  "SubhaloVel": np.tile(V_SYS, (len(galaxies), 1))},
        particles=particles, insitu=np.concatenate(insitu), n_snapshot_chunks=3,
        n_catalog_chunks=1,
    )


def brute_force_maps(gal: dict, rotation: np.ndarray, half_width: float) -> dict:
    """Maps by a plain loop over particles, from the physical truth."""
    cosmo = FlatLambdaCDM(H0=100 * H, Om0=OM, Tcmb0=0)
    t_now = cosmo.age(1 / A - 1).to_value(u.Gyr)
    pix = 2 * half_width / NPIX
    sums = {k: np.zeros((NPIX, NPIX)) for k in ("m", "mv", "mv2", "mage", "mz", "mex", "mlab")}
    count = np.zeros((NPIX, NPIX), int)
    for i in range(len(gal["mass_msun"])):
        if gal["aform"][i] <= 0:
            continue
        x, y = rotation[0] @ gal["offsets_kpc"][i], rotation[1] @ gal["offsets_kpc"][i]
        ix, iy = int(np.floor((x + half_width) / pix)), int(np.floor((y + half_width) / pix))
        if not (0 <= ix < NPIX and 0 <= iy < NPIX):
            continue
        m = gal["mass_msun"][i]
        v = rotation[2] @ (gal["vel_kms"][i] - V_SYS)
        age = t_now - cosmo.age(1 / gal["aform"][i] - 1).to_value(u.Gyr)
        count[iy, ix] += 1
        for key, val in (("m", m), ("mv", m * v), ("mv2", m * v * v), ("mage", m * age),
                         ("mz", m * gal["metallicity"][i]),
                         ("mex", m * (gal["insitu"][i] == 0)),
                         ("mlab", m * (gal["insitu"][i] >= 0))):
            sums[key][iy, ix] += val
    m = np.where(sums["m"] > 0, sums["m"], np.inf)
    mean_v = sums["mv"] / m
    return {
        "conditions": np.stack([
            sums["m"] / pix**2, mean_v,
            np.sqrt(np.maximum(sums["mv2"] / m - mean_v**2, 0)),
            sums["mage"] / m, sums["mz"] / m]),
        "exsitu": sums["mex"] / np.where(sums["mlab"] > 0, sums["mlab"], np.inf),
        "count": count,
        "pixel_size": pix,
    }


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hand_made")
    base = tmp / "sim" / "output"
    rng = np.random.default_rng(42)
    # Masses in Msun around the 1e10 cut: a wrong power of h moves one across it.
    galaxies = [make_galaxy(rng, 600, 40, 2.0e10),   # selected
                make_galaxy(rng, 300, 10, 0.9e10),   # below the cut (above it if h applied twice)
                make_galaxy(rng, 400, 20, 1.2e10)]   # selected (below the cut if h is forgotten)
    centres = [CENTRE, np.array([300.0, 300.0, 300.0]), np.array([600.0, 100.0, 900.0])]
    write_hand_made_universe(base, galaxies, centres)
    cfg = {**CONFIG, "tng": {**CONFIG["tng"], "stellar_mass_min_msun": 1.0e10}}
    catalog = write_galaxy_catalog(base, SNAP, cfg["tng"], tmp / "catalog.csv")
    extract_batch(base, SNAP, tmp / "catalog.csv", 0, cfg, tmp / "maps.h5", tmp / "gal.csv",
                  progress=False)
    return {"base": base, "galaxies": galaxies, "catalog": catalog, "tmp": tmp}


def test_mass_cut_is_in_msun_with_h_removed(hand_made):
    cat = hand_made["catalog"]
    assert sorted(cat["subhalo_id"]) == [0, 2]
    np.testing.assert_allclose(cat.sort_values("subhalo_id")["stellar_mass_msun"],
                               [2.0e10, 1.2e10], rtol=1e-5)


def test_maps_match_brute_force_physics(hand_made):
    catalog_file = hand_made["base"] / "groups_050" / "fof_subhalo_tab_050.0.hdf5"
    with h5py.File(catalog_file) as cat:
        rhalf_ckpc_h = cat["Subhalo/SubhaloHalfmassRadType"][:, 4]
    with h5py.File(hand_made["tmp"] / "maps.h5") as h5:
        sid = h5["subhalo_id"][...]
        for k in np.flatnonzero(sid == 0):
            half_width = CONFIG["maps"]["fov_half_mass_radii"] * rhalf_ckpc_h[0] * A / H
            ref = brute_force_maps(hand_made["galaxies"][0], h5["rotation"][k], half_width)
            assert h5["pixel_size_kpc"][k] == pytest.approx(ref["pixel_size"], rel=1e-6)
            np.testing.assert_array_equal(h5["particle_count"][k], ref["count"])
            got = h5["conditions"][k]
            for c in range(5):
                np.testing.assert_allclose(got[c], ref["conditions"][c], rtol=2e-4, atol=1e-3,
                                           err_msg=f"channel {c}")
            np.testing.assert_allclose(h5["exsitu_fraction_map"][k], ref["exsitu"], atol=1e-5)
            assert ref["count"].sum() > 300  # the field of view holds most of the galaxy


def test_global_exsitu_fraction_excludes_wind(hand_made):
    gal = hand_made["galaxies"][0]
    star = ~gal["wind"]
    m = gal["mass_msun"][star]
    expected = m[gal["insitu"][star] == 0].sum() / m.sum()
    manifest = pd.read_csv(hand_made["tmp"] / "gal.csv")
    row = manifest[manifest["subhalo_id"] == 0].iloc[0]
    assert row["exsitu_fraction_global"] == pytest.approx(expected, rel=1e-5)
    assert row["n_wind_particles"] == 40 and row["n_star_particles"] == 600


def test_batches_are_contiguous_and_balanced():
    rng = np.random.default_rng(3)
    n = 200
    lengths = rng.integers(100, 5000, n)
    cat = pd.DataFrame({"subhalo_id": np.arange(n), "n_part4": lengths,
                        "offset_part4": np.concatenate([[0], np.cumsum(lengths)[:-1]]),
                        "status": "selected"})
    cat.loc[[5, 50], "status"] = "skipped"
    out = assign_batches(cat, 7)
    sel = out[out["status"] == "selected"]
    assert (out.loc[out["status"] == "skipped", "batch"] == -1).all()
    assert np.all(np.diff(sel.sort_values("offset_part4")["batch"].to_numpy()) >= 0)
    load = sel.groupby("batch")["n_part4"].sum()
    assert len(load) == 7 and load.max() < 1.5 * load.mean()


def test_read_ranges_merge_small_gaps():
    offsets = np.array([0, 100, 5000, 5100])
    lengths = np.array([100, 50, 100, 10])
    ranges = read_ranges(offsets, lengths, max_gap=1000)
    assert [(s, e) for s, e, _ in ranges] == [(0, 150), (5000, 5110)]
    assert [m.tolist() for *_, m in ranges] == [[0, 1], [2, 3]]
    assert len(read_ranges(offsets, lengths, max_gap=10_000)) == 1


def test_read_ranges_respect_a_maximum_length_and_cover_every_galaxy():
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 500, 300)
    offsets = np.cumsum(lengths + rng.integers(0, 50, 300)) - lengths
    for max_length in (None, 2000, 10):
        ranges = read_ranges(offsets, lengths, max_gap=100, max_length=max_length)
        members = np.sort(np.concatenate([m for _, _, m in ranges]))
        np.testing.assert_array_equal(members, np.arange(300))
        for start, stop, m in ranges:
            assert start == offsets[m].min() and stop == (offsets[m] + lengths[m]).max()
            if max_length is not None and len(m) > 1:
                assert stop - start <= max_length
    assert len(read_ranges(offsets, lengths, 100, max_length=10)) == 300  # one read each
    assert len(read_ranges(offsets, lengths, 100)) == 1

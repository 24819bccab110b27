"""The demo universe's photometrics and the realism branch's structure knobs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from simbridge.extract import mock_images as mi
from simbridge.sims.tng_demo import Z_SUN, generate_demo_universe

BASE = {"n_galaxies": 1, "star_particle_mass_msun": 2e7, "merger_trees": False,
        "snapshots": [{"snapshot": 99, "redshift": 0.0}], "edge_fraction": 0.0,
        "log10_stellar_mass_range": [10.2, 10.6], "n_snapshot_chunks": 1}


def stars_of(tmp_path: Path, name: str, knobs: dict) -> dict[str, np.ndarray]:
    sim = Path(generate_demo_universe(tmp_path / name, {**BASE, **knobs}, 9)["sim_dir"])
    with h5py.File(sim / "output" / "snapdir_099" / "snap_099.0.hdf5") as fh:
        return {k: fh["PartType4"][k][...] for k in fh["PartType4"]}


def test_structure_knobs_default_to_nothing_and_change_what_they_say(tmp_path):
    base = stars_of(tmp_path, "base", {})
    same = stars_of(tmp_path, "same", {"disk_scale_factor": 1.0, "bulge_fraction_scale": 1.0,
                                       "disk_clump_fraction": 0.0})
    for k in base:
        np.testing.assert_array_equal(base[k], same[k])
    compact = stars_of(tmp_path, "compact", {"disk_scale_factor": 0.5})
    r = {n: np.median(np.linalg.norm(s["Coordinates"] - np.median(s["Coordinates"], 0), axis=1))
         for n, s in (("base", base), ("compact", compact))}
    assert r["compact"] < 0.7 * r["base"]
    clumpy = stars_of(tmp_path, "clumpy", {"disk_clump_fraction": 0.3})
    young = lambda s: (s["GFM_StellarFormationTime"] > 0.93).mean()  # noqa: E731
    assert young(clumpy) > young(base) + 0.02  # 30% of the disk, which holds a part of the stars


def test_photometrics_follow_the_documented_mass_to_light_relation(tmp_path):
    s = stars_of(tmp_path, "phot", {})
    star = s["GFM_StellarFormationTime"] > 0
    mag_r = s["GFM_StellarPhotometrics"][star, mi.R_BAND_COLUMN].astype(np.float64)
    assert np.isfinite(mag_r).all() and (mag_r < 90).all()
    # wind cells carry no light
    assert (s["GFM_StellarPhotometrics"][~star] >= 90).all()
    # r band: log10(M/L) = -0.22 + 0.75 log10(age / Gyr) + 0.20 log10(Z / Zsun), M_sun,r = 4.65
    from simbridge.units import cosmic_time_gyr
    age = float(cosmic_time_gyr(1.0, 0.6774, 0.3089, 0.6911)) - cosmic_time_gyr(
        s["GFM_StellarFormationTime"][star].astype(np.float64), 0.6774, 0.3089, 0.6911)
    init = s["GFM_InitialMass"][star].astype(np.float64) * 1e10 / 0.6774
    z = s["GFM_Metallicity"][star].astype(np.float64)
    log_ml = -0.22 + 0.75 * np.log10(np.clip(age, 1e-3, None)) + 0.20 * np.log10(
        np.clip(z, 1e-5, None) / Z_SUN)
    expected = 4.65 - 2.5 * (np.log10(init) - log_ml)
    np.testing.assert_allclose(mag_r, expected, atol=2e-3)


def test_mock_set_records_a_galaxy_without_light_as_skipped(tmp_path):
    from simbridge.dataset.realism import build_mock_set, read_model_input
    from simbridge.sims import tng

    p = {**BASE, "n_galaxies": 3}
    sim = Path(generate_demo_universe(tmp_path / "u", p, 4)["sim_dir"])
    base = sim / "output"
    offsets = tng.read_subhalo_particle_offsets(base, 99)
    lengths = tng.read_subhalo_catalog(base, 99, ["SubhaloLenType"])["SubhaloLenType"]
    dark = 0  # subhalo 0 loses its light
    with h5py.File(base / "snapdir_099" / "snap_099.0.hdf5", "r+") as fh:
        start = int(offsets[dark, 4])
        fh["PartType4/GFM_StellarPhotometrics"][start:start + int(lengths[dark, 4])] = 99.0
    settings = {"cutout_npix": 32, "model_npix": 16, "redshift": 0.1}
    table = build_mock_set(base, 99, "sim", settings, {"stellar_mass_min_msun": 1e9}, False, 1,
                           tmp_path / "s.h5", tmp_path / "s.csv", {})
    row = table.set_index("subhalo_id").loc[dark]
    assert row["row"] == -1 and row["status"] == "skipped"
    assert "luminous star particles" in row["reason"]
    kept = table[table["row"] >= 0]
    assert len(kept) >= 1 and read_model_input(tmp_path / "s.h5").shape == (len(kept), 16, 16)

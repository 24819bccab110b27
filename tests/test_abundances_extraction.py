"""NIHAO demo suite, tipsy/AHF round trip through pynbody, abundance ratios and histograms."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from simbridge.config import validate_config
from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract.abundances import (
    SOLAR_MASS_FRACTIONS,
    abundance_histogram,
    abundance_ratios,
    build_histograms,
    read_batch,
)
from simbridge.sims.nihao import SnapshotProblem, list_snapshots, read_building_block
from simbridge.sims.nihao_demo import (
    AhfHalo,
    TipsyUnits,
    generate_demo_suite,
    write_ahf_catalogue,
    write_param_file,
    write_tipsy_snapshot,
)
from tests.conftest import ROOT

pynbody = pytest.importorskip("pynbody")

TINY_DEMO = {
    "n_simulations": 4, "snapshot_steps": [128, 512, 1024], "log10_halo_mass_range": [10.0, 11.0],
    "n_star_particles": 120, "n_dm_particles": 60, "n_gas_particles": 10,
    "n_background_particles": 10, "zero_mass_fraction_stars": 0.05, "box_size_mpc_h": 20.0,
    "hubble_param": 0.671, "omega_matter": 0.3175,
}


def settings(**abundances) -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = validate_config(cfg)
    cfg["abundances"].update(abundances)
    return cfg


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("nihao") / "suite"
    return out, generate_demo_suite(out, TINY_DEMO, seed=7)


def _round_trip_snapshot(folder: Path, units: TipsyUnits, a: float = 0.5):
    """A hand-made snapshot: 3 gas, 5 dark, 4 stars (one with zero Fe), 2 AHF halos."""
    folder.mkdir(parents=True, exist_ok=True)
    write_param_file(folder / "g1.00e10.param", units)
    rng = np.random.default_rng(0)
    ng, nd, ns = 3, 5, 4

    def fam(n: int, **extra) -> dict:
        return {"pos": rng.uniform(-0.01, 0.01, (n, 3)), "vel": np.zeros((n, 3)),
                "mass": rng.uniform(1e-9, 2e-9, n), "eps": np.full(n, 1e-6),
                "phi": np.zeros(n), "metals": np.full(n, 0.002), **extra}

    gas = fam(ng, rho=np.ones(ng), temp=np.full(ng, 1e4))
    dark = fam(nd)
    star = fam(ns, tform=np.array([0.05, 0.1, 0.2, 0.3]))
    ox = np.concatenate([np.full(ng + nd, 1e-4), [1e-3, 2e-3, 3e-3, 4e-3]]).astype(np.float32)
    fe = np.concatenate([np.full(ng + nd, 1e-5), [1e-4, 0.0, 3e-4, 5e-4]]).astype(np.float32)
    aux = {"OxMassFrac": ox, "FeMassFrac": fe, "iord": np.arange(ng + nd + ns, dtype=np.int32)}
    path = folder / "g1.00e10.00512"
    write_tipsy_snapshot(path, a, gas, dark, star, aux)
    # main halo: 4 dark (indices 3..6), all stars (8..11), 2 gas (0, 1); sub-halo: 2 dark
    main = AhfHalo(0, -1, np.array([3, 4, 5, 6, 8, 9, 10, 11, 0, 1]), np.full(3, 100.0), 30.0)
    sub = AhfHalo(1, 0, np.array([3, 4]), np.full(3, 100.0), 5.0)
    masses = np.concatenate([gas["mass"], dark["mass"], star["mass"]]) * units.msol_unit
    write_ahf_catalogue(path, 1.0 / a - 1.0, [main, sub], masses * units.hubble_param,
                        (ng, nd, ns))
    return path, gas, dark, star, aux


def test_tipsy_and_ahf_round_trip_through_pynbody(tmp_path):
    from astropy.cosmology import FlatLambdaCDM

    units = TipsyUnits.for_box(20.0, 0.671, 0.3175, 0.6825)
    path, gas, dark, star, aux = _round_trip_snapshot(tmp_path / "g1.00e10", units)
    assert not list(tmp_path.rglob("*.pynbody-meta"))
    assert path.read_bytes()[:32][12:16] == (3).to_bytes(4, "big")  # big-endian, ndim = 3
    sim = pynbody.load(str(path))
    assert (len(sim.g), len(sim.dm), len(sim.s)) == (3, 5, 4)
    np.testing.assert_allclose(sim.s["mass"].in_units("Msol"),
                               star["mass"] * units.msol_unit, rtol=1e-6)
    np.testing.assert_allclose(sim["OxMassFrac"], aux["OxMassFrac"], rtol=1e-6)
    np.testing.assert_array_equal(sim["iord"], aux["iord"])
    # units and cosmology from the hand-written .param, against astropy
    assert float(sim.properties["h"]) == pytest.approx(0.671, rel=1e-3)
    assert float(sim.properties["time"].in_units("Gyr")) == pytest.approx(
        FlatLambdaCDM(H0=67.1, Om0=0.3175, Tcmb0=0).age(1.0 / 0.5 - 1.0).value, rel=2e-3)
    # standard cosmological units: the time unit is 1/sqrt(G rho_crit) ~ 42.2 Gyr for h = 0.671
    assert units.time_unit_gyr == pytest.approx(42.2, rel=2e-3)
    np.testing.assert_allclose(sim.s["tform"].in_units("Gyr"), star["tform"] * units.time_unit_gyr,
                               rtol=1e-4)  # pynbody rounds G in its unit
    halos = sim.halos(halo_numbers="v1", write_fpos=False)
    assert len(halos) == 2
    main, sub = halos[1], halos[2]
    assert (len(main.dm), len(main.s), len(main.g)) == (4, 4, 2)
    np.testing.assert_array_equal(np.sort(main["iord"]), [0, 1, 3, 4, 5, 6, 8, 9, 10, 11])
    np.testing.assert_array_equal(np.sort(sub["iord"]), [3, 4])
    assert halos[1].properties["children"] == [2]
    assert halos[2].properties["parent"] == 1
    block = read_building_block(path)
    assert block.n_star == 4
    assert block.stellar_mass_msun == pytest.approx(star["mass"].sum() * units.msol_unit,
                                                    rel=1e-6)
    assert block.dm_mass_msun == pytest.approx(dark["mass"][:4].sum() * units.msol_unit,
                                               rel=1e-6)


def test_feh_and_ofe_against_a_hand_computation_with_zeros():
    ox = np.array([1e-3, 2e-3, 0.0, 4e-3, 5.7e-3])
    fe = np.array([1e-4, 0.0, 3e-4, 5e-4, 1.29e-3])
    metals = np.array([0.002, 0.004, 0.006, 0.008, 0.0134])
    mass = np.ones(5)
    ox_in, fe_in = ox.copy(), fe.copy()
    # hand computation: Asplund 2009 mass fractions from log eps(O) = 8.69, log eps(Fe) = 7.50
    x_h_sun = 0.7381
    x_o_sun = x_h_sun * 15.999 / 1.008 * 10 ** (8.69 - 12)
    x_fe_sun = x_h_sun * 55.845 / 1.008 * 10 ** (7.50 - 12)
    assert x_o_sun == pytest.approx(5.74e-3, rel=2e-3)
    assert x_fe_sun == pytest.approx(1.293e-3, rel=2e-3)
    assert SOLAR_MASS_FRACTIONS["O"] == pytest.approx(x_o_sun)
    expect_feh, expect_ofe = [], []
    for o, f, z in zip(ox, fe, metals, strict=True):
        if o == 0 or f == 0:
            continue
        x_h = 1 - z - (0.236 + 2.1 * z)
        expect_feh.append(math.log10(f / x_h) - math.log10(x_fe_sun / x_h_sun))
        expect_ofe.append(math.log10(o / f) - math.log10(x_o_sun / x_fe_sun))
    got = abundance_ratios(ox, fe, metals, mass, "drop")
    np.testing.assert_allclose(got.feh, expect_feh, rtol=1e-12)
    np.testing.assert_allclose(got.ofe, expect_ofe, rtol=1e-12)
    assert (got.n_zero_ox, got.n_zero_fe, got.n_dropped) == (1, 1, 2)
    np.testing.assert_array_equal(ox, ox_in)  # inputs are not modified (pynbody's are)
    np.testing.assert_array_equal(fe, fe_in)
    floor = abundance_ratios(ox, fe, metals, mass, "floor", 1e-9)
    assert floor.feh.size == 5 and floor.n_dropped == 0
    x_h = 1 - 0.004 - (0.236 + 2.1 * 0.004)
    assert floor.feh[1] == pytest.approx(math.log10(1e-9 / x_h) - math.log10(x_fe_sun / x_h_sun))
    assert floor.ofe[2] == pytest.approx(math.log10(1e-9 / 3e-4) - math.log10(x_o_sun / x_fe_sun))
    with pytest.raises(SimBridgeConfigError, match="zero_mass_fraction"):
        abundance_ratios(ox, fe, metals, mass, "clip")


def test_our_ratios_differ_from_pynbody_only_by_its_solar_constants(tmp_path):
    """pynbody's feh/ofe (second library) agree up to the solar offsets on non-zero stars."""
    units = TipsyUnits.for_box(20.0, 0.671, 0.3175, 0.6825)
    path, *_ = _round_trip_snapshot(tmp_path / "g1.00e10", units)
    sim = pynbody.load(str(path))
    block = read_building_block(path)
    ours = abundance_ratios(block.ox_mass_frac, block.fe_mass_frac, block.metals,
                            block.star_mass_msun, "drop")
    nonzero = block.fe_mass_frac > 0
    theirs_feh = np.asarray(sim.s["feh"])[nonzero]
    theirs_ofe = np.asarray(sim.s["ofe"])[nonzero]
    sun = SOLAR_MASS_FRACTIONS
    np.testing.assert_allclose(
        ours.feh - theirs_feh,
        math.log10(0.125e-2 / 0.706) - math.log10(sun["Fe"] / sun["H"]), atol=1e-5)
    np.testing.assert_allclose(
        ours.ofe - theirs_ofe, math.log10(0.84e-2 / 0.125e-2) - math.log10(sun["O"] / sun["Fe"]),
        atol=1e-5)
    # and pynbody replaced the zero Fe mass fraction in place (what we avoid)
    assert float(np.min(sim.s["FeMassFrac"])) > 0


def test_demo_suite_has_the_nihao_layout_and_learnable_truths(suite):
    out, summary = suite
    snaps = list_snapshots(out)
    assert len(snaps) == 4 * 3 == summary["n_snapshots"]
    for gal in {s["galaxy"] for s in snaps}:
        assert (out / gal / f"{gal}.param").is_file()
        assert gal.startswith("g") and "e1" in gal
    truth = {t["snapshot"]: t for t in summary["snapshots"]}
    n_read = 0
    for snap in snaps:
        t = truth[snap["snapshot"]]
        if not t["halos_written"]:
            with pytest.raises(SnapshotProblem, match="no halo catalogue"):
                read_building_block(snap["path"])
            continue
        if t["n_star"] == 0:
            with pytest.raises(SnapshotProblem, match="no stars"):
                read_building_block(snap["path"])
            continue
        block = read_building_block(snap["path"])
        n_read += 1
        assert block.stellar_mass_msun == pytest.approx(t["stellar_mass_msun"], rel=1e-5)
        assert block.dm_mass_msun == pytest.approx(t["dm_mass_msun"], rel=1e-5)
        assert block.time_gyr == pytest.approx(t["time_gyr"], rel=2e-3)
    assert n_read >= 8
    # the knee: later snapshots of a dwarf reach higher [Fe/H] and lower [O/Fe]
    gal = snaps[-1]["galaxy"]
    early, late = (read_building_block(s["path"]) for s in snaps if s["galaxy"] == gal
                   and s["step"] in (512, 1024))
    r_early, r_late = (abundance_ratios(b.ox_mass_frac, b.fe_mass_frac, b.metals,
                                        b.star_mass_msun) for b in (early, late))
    assert np.median(r_late.feh) > np.median(r_early.feh)
    assert np.median(r_late.ofe) < np.median(r_early.ofe)


def test_extraction_writes_histograms_over_the_global_percentile_range(suite, tmp_path):
    out, _ = suite
    cfg = settings(percentile_range=[1.0, 99.0], n_bins=16, stellar_mass_max_msun=6e9)
    snaps = list_snapshots(out)
    files = []
    for b in range(2):
        files.append((tmp_path / f"b{b}.h5", tmp_path / f"b{b}.csv"))
        read_batch(snaps[b::2], cfg, *files[-1])
    summary = build_histograms([f[0] for f in files], [f[1] for f in files], cfg,
                               tmp_path / "blocks.h5", tmp_path / "blocks.csv",
                               tmp_path / "errors.csv")
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert "no halo catalogue" in set(errors["reason"])
    blocks = pd.read_csv(tmp_path / "blocks.csv")
    assert summary["n_blocks"] == len(blocks) and len(blocks) + len(errors) == len(snaps)
    all_feh, all_ofe, per_block = [], [], []
    for snap in blocks.itertuples():
        b = read_building_block(snap.path)
        r = abundance_ratios(b.ox_mass_frac, b.fe_mass_frac, b.metals, b.star_mass_msun)
        assert r.n_dropped == snap.n_dropped
        all_feh.append(r.feh)
        all_ofe.append(r.ofe)
        per_block.append(r)
    lo, hi = np.percentile(np.concatenate(all_feh), [1.0, 99.0])
    with h5py.File(tmp_path / "blocks.h5") as h5:
        feh_edges, ofe_edges = h5["feh_edges"][...], h5["ofe_edges"][...]
        hists = h5["histograms"][...]
        assert h5["feh_edges"].attrs["units"] == "dex"
        assert h5["histograms"].attrs["units"] == "star particles"
        assert h5["infall_time_gyr"].attrs["units"] == "Gyr"
    assert hists.shape == (len(blocks), 16, 16)
    assert feh_edges.shape == (17,)
    np.testing.assert_allclose([feh_edges[0], feh_edges[-1]], [lo, hi])
    np.testing.assert_allclose(np.diff(feh_edges), (hi - lo) / 16)
    olo, ohi = np.percentile(np.concatenate(all_ofe), [1.0, 99.0])
    np.testing.assert_allclose([ofe_edges[0], ofe_edges[-1]], [olo, ohi])
    for hist, r, outside in zip(hists, per_block, blocks["n_star_outside_range"], strict=True):
        # brute force: bin every star by hand (last bin closed on the right, as numpy)
        ref = np.zeros((16, 16))
        for f, o in zip(r.feh, r.ofe, strict=True):
            if feh_edges[0] <= f <= feh_edges[-1] and ofe_edges[0] <= o <= ofe_edges[-1]:
                j = min(int((f - feh_edges[0]) / (feh_edges[1] - feh_edges[0])), 15)
                i = min(int((o - ofe_edges[0]) / (ofe_edges[1] - ofe_edges[0])), 15)
                ref[i, j] += 1
        np.testing.assert_allclose(hist, ref)
        assert hist.sum() + outside == r.feh.size


def test_mass_weighted_histograms_sum_the_star_masses():
    feh, ofe, mass = np.array([-1.0, -0.5, 0.0]), np.array([0.1, 0.2, 0.3]), np.array([1., 2, 4])
    edges = np.linspace(-1.0, 0.0, 5)
    hist = abundance_histogram(feh, ofe, mass, edges, np.linspace(0.1, 0.3, 5))
    assert hist.sum() == 7.0 and hist[-1, -1] == 4.0 and hist[0, 0] == 1.0


def test_bad_snapshots_give_a_reason_not_a_crash(suite, tmp_path):
    out, summary = suite
    good = next(s for s in summary["snapshots"] if s["halos_written"] and s["n_star"] > 0)
    src = out / good["galaxy"] / good["snapshot"]
    with pytest.raises(SnapshotProblem, match="unreadable snapshot"):
        read_building_block(tmp_path / "g1.00e10.00512")  # missing
    folder = tmp_path / good["galaxy"]
    folder.mkdir()
    for f in (out / good["galaxy"]).iterdir():
        if f.name.startswith(good["snapshot"]) or f.suffix == ".param":
            (folder / f.name).write_bytes(f.read_bytes())
    truncated = folder / good["snapshot"]
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(SnapshotProblem, match="unreadable snapshot"):
        read_building_block(truncated)
    # a catalogue whose first halo holds no stars
    (folder / good["snapshot"]).write_bytes(src.read_bytes())
    ahf = next(folder.glob("*.AHF_particles"))
    lines = ahf.read_text().splitlines()
    n_first = int(lines[1].split()[0])
    dm_only = [ln for ln in lines[2:2 + n_first] if ln.split()[1] == "1"]
    rest = lines[2 + n_first:]
    ahf.write_text("\n".join([lines[0], f"{len(dm_only)} 0", *dm_only, *rest]) + "\n")
    halos_file = next(folder.glob("*.AHF_halos"))
    rows = halos_file.read_text().splitlines()
    cols = rows[1].split()
    cols[4] = str(len(dm_only))
    halos_file.write_text("\n".join([rows[0], " ".join(cols), *rows[2:]]) + "\n")
    with pytest.raises(SnapshotProblem, match="no stars"):
        read_building_block(folder / good["snapshot"])
    # a snapshot without a .param
    (folder / f"{good['galaxy']}.param").unlink()
    with pytest.raises(SnapshotProblem, match=r"\.param"):
        read_building_block(folder / good["snapshot"])
    with pytest.raises(SimBridgeInputError, match="not a directory"):
        list_snapshots(tmp_path / "nowhere")
    with pytest.raises(SimBridgeInputError, match="nihao.galaxies"):
        list_snapshots(out, galaxies=["g9.99e99"])


def test_a_misspelt_abundances_key_is_a_config_error():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["abundances"]["weigthing"] = "mass"
    with pytest.raises(SimBridgeConfigError, match="weigthing"):
        validate_config(cfg)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["abundances"]["superposition"]["disjointness"] = "loose"
    with pytest.raises(SimBridgeConfigError, match="disjointness"):
        validate_config(cfg)

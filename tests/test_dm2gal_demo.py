"""The CAMELS-format paired demo suite and its reader: the linear spectrum of the initial
field, friends-of-friends against brute force, twins sharing initial conditions, the real
layout (Blosc, both name generations) and bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import integrate

from simbridge.errors import SimBridgeInputError
from simbridge.models.dm2gal.power import power_spectrum
from simbridge.sims import camels
from simbridge.sims.camels_cosmology import (
    eisenstein_hu_nowiggle,
    gaussian_random_field,
    linear_power,
)
from simbridge.sims.camels_demo import generate_demo_suite
from simbridge.sims.fof import friends_of_friends

TINY_DEMO = {"n_runs": 4, "particles_per_side": 16, "a_init": 0.05, "pm_steps": 4,
             "linking_length": 0.2, "min_group_particles": 8, "hydro_jitter_mpc_h": 0.02,
             "environment_radius_mpc_h": 2.0, "star_particle_mass_msun_h": 2e8, "layout": "new"}


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("camels")
    generate_demo_suite(root, TINY_DEMO, seed=7)
    return root


def test_the_linear_power_spectrum_is_recovered_from_the_initial_field():
    n, box = 64, 25.0
    power = linear_power(0.3, 0.8)
    delta_k = gaussian_random_field(n, box, power, np.random.default_rng(3))
    delta = np.fft.irfftn(delta_k, s=(n, n, n), axes=(0, 1, 2))
    pk = power_spectrum(1.0 + delta, box)
    sel = pk["k"] < 0.5 * np.pi * n / box
    expected = power(pk["k"][sel])
    # shell average of P(|k|) over the shell's modes, not P(mean k): compare with tolerance
    z = (pk["pk"][sel] / expected - 1.0) / np.sqrt(2.0 / pk["n_modes"][sel])
    assert np.abs(np.mean(z)) < 3.0 / np.sqrt(sel.sum()) + 0.3
    assert np.all(np.abs(z) < 5.0)
    ratio = np.sum(pk["pk"][sel] * pk["n_modes"][sel]) / np.sum(expected * pk["n_modes"][sel])
    assert abs(ratio - 1.0) < 0.05


def test_the_linear_spectrum_is_normalised_to_sigma_8():
    power = linear_power(0.3, 0.83)
    k = np.logspace(-4, 2, 20000)
    x = 8.0 * k
    w = 3.0 * (np.sin(x) - x * np.cos(x)) / x**3
    sigma = np.sqrt(integrate.trapezoid(k**2 * power(k) * w**2 / (2 * np.pi**2), k))
    assert sigma == pytest.approx(0.83, rel=2e-3)
    # EH98 no-wiggle: T -> 1 on large scales, falls on small ones
    t = eisenstein_hu_nowiggle(np.array([1e-4, 1.0, 10.0]), 0.3, 0.049, 0.67)
    assert t[0] == pytest.approx(1.0, abs=1e-3) and t[0] > t[1] > t[2] > 0


def _brute_force_groups(pos: np.ndarray, box: float, ll: float, min_members: int) -> set:
    n = len(pos)
    d = pos[:, None, :] - pos[None, :, :]
    d = (d + 0.5 * box) % box - 0.5 * box
    linked = np.sqrt((d**2).sum(-1)) < ll
    label = -np.ones(n, int)
    groups = []
    for i in range(n):
        if label[i] >= 0:
            continue
        stack, members = [i], []
        label[i] = len(groups)
        while stack:
            j = stack.pop()
            members.append(j)
            for m in np.flatnonzero(linked[j] & (label < 0)):
                label[m] = len(groups)
                stack.append(m)
        groups.append(frozenset(members))
    return {g for g in groups if len(g) >= min_members}


def test_friends_of_friends_matches_a_brute_force_grouping():
    rng = np.random.default_rng(11)
    box = 10.0
    centres = rng.uniform(0, box, (12, 3))
    blobs = [c + 0.15 * rng.standard_normal((rng.integers(3, 40), 3)) for c in centres]
    blobs.append(np.array([[0.02, 5.0, 9.98], [9.99, 5.0, 0.01], [0.05, 5.05, 0.03]]))  # wraps
    pos = np.mod(np.concatenate(blobs + [rng.uniform(0, box, (300, 3))]), box)
    labels = friends_of_friends(pos, box, 0.2, min_members=3)
    ours = {frozenset(np.flatnonzero(labels == g)) for g in range(labels.max() + 1)}
    assert ours == _brute_force_groups(pos, box, 0.2, 3)
    sizes = np.bincount(labels[labels >= 0])
    assert np.all(np.diff(sizes) <= 0)  # numbered by decreasing size


def test_the_twins_share_initial_conditions(tiny_suite):
    table = camels.read_parameter_table(camels.parameter_table_path(tiny_suite, "IllustrisTNG"))
    assert sorted(table) == ["LH_0", "LH_1", "LH_2", "LH_3"]
    for run in ("LH_0", "LH_2"):
        dm, hydro = camels.find_twin_files(tiny_suite, "IllustrisTNG", run)
        a = camels.read_particles(dm.snapshot, 1, ("Coordinates", "ParticleIDs"))
        b = camels.read_particles(hydro.snapshot, 1, ("Coordinates", "ParticleIDs"))
        ia, ib = np.argsort(a["ParticleIDs"]), np.argsort(b["ParticleIDs"])
        assert np.array_equal(a["ParticleIDs"][ia], b["ParticleIDs"][ib])
        d = a["Coordinates"][ia] - b["Coordinates"][ib]
        d = (d + 12.5) % 25.0 - 12.5
        # same initial conditions: particle by particle within the hydro twin's jitter
        assert np.percentile(np.abs(d), 99) < 5 * TINY_DEMO["hydro_jitter_mpc_h"]
        assert not np.all(a["ParticleIDs"][:-1] <= a["ParticleIDs"][1:])  # not sorted by ID
    # different parameter sets: different initial fields
    p0 = camels.read_particles(camels.find_run_files(tiny_suite, "IllustrisTNG", "LH_0",
                                                     dark_matter_only=True).snapshot)
    p1 = camels.read_particles(camels.find_run_files(tiny_suite, "IllustrisTNG", "LH_1",
                                                     dark_matter_only=True).snapshot)
    assert not np.allclose(np.sort(p0["Coordinates"][:, 0]), np.sort(p1["Coordinates"][:, 0]))


def test_the_nbody_snapshot_is_laid_out_and_compressed_as_camels(tiny_suite):
    dm, hydro = camels.find_twin_files(tiny_suite, "IllustrisTNG", "LH_1")
    assert dm.snapshot.name == "snapshot_090.hdf5" and dm.catalog.name == "groups_090.hdf5"
    assert "FOF_Subfind" in dm.catalog.parts and "IllustrisTNG_DM" in dm.snapshot.parts
    with h5py.File(dm.snapshot) as fh:
        assert set(fh) == {"Header", "CompressionInfo", "PartType1"}
        assert "json" in fh["CompressionInfo"].attrs
        ds = fh["PartType1/Coordinates"]
        assert ds.dtype == np.float32
        assert "32001" in ds._filters  # Blosc
        assert "Masses" not in fh["PartType1"] and fh["Header"].attrs["MassTable"][1] > 0
    with h5py.File(hydro.snapshot) as fh:
        assert {"Header", "Config", "Parameters", "PartType0", "PartType1", "PartType4",
                "PartType5"} <= set(fh)
        assert fh["PartType1/Coordinates"].dtype == np.float64
    with h5py.File(hydro.catalog) as fh:
        for key in ("GroupPos", "GroupMass", "GroupLenType", "GroupFirstSub", "GroupNsubs",
                    "Group_M_Crit200", "Group_R_Crit200"):
            assert key in fh["Group"]
        for key in ("SubhaloPos", "SubhaloMassType", "SubhaloLenType", "SubhaloGrNr",
                    "SubhaloStellarPhotometrics"):
            assert key in fh["Subhalo"]
        assert "SubhaloFlag" not in fh["Subhalo"] and "ID" in fh["IDs"]
        grnr, first = fh["Subhalo/SubhaloGrNr"][()], fh["Group/GroupFirstSub"][()]
        has = first >= 0
        assert np.array_equal(grnr[first[has]], np.flatnonzero(has))


def test_the_reader_accepts_the_older_file_names(tmp_path):
    generate_demo_suite(tmp_path, {**TINY_DEMO, "layout": "old"}, seed=3)
    dm, hydro = camels.find_twin_files(tmp_path, "IllustrisTNG", "LH_0")
    assert dm.snapshot.name == "snap_033.hdf5" and hydro.catalog.name == \
        "fof_subhalo_tab_033.hdf5"
    cat = camels.read_group_catalog(hydro.catalog, ("GroupPos",), ("SubhaloMassType",))
    assert cat["GroupPos"].max() <= 25.0 and cat["SubhaloMassType"].shape[1] == 6


def test_a_compressed_snapshot_read_without_the_plugin_is_a_clear_error(tiny_suite):
    dm, _ = camels.find_twin_files(tiny_suite, "IllustrisTNG", "LH_0")
    code = ("import sys; sys.modules['hdf5plugin'] = None\n"
            "from simbridge.sims import camels\n"
            "from simbridge.errors import SimBridgeInputError\n"
            "try:\n"
            f"    camels.read_particles({str(dm.snapshot)!r})\n"
            "except SimBridgeInputError as err:\n"
            "    print('CLEAR', err)\n")
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=3600)
    assert "CLEAR" in out.stdout, out.stderr
    assert "hdf5plugin" in out.stdout and "Blosc" in out.stdout


def test_a_missing_catalogue_and_a_run_without_its_twin_are_clear_errors(tiny_suite, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_suite, root)
    cat = camels.find_run_files(root, "IllustrisTNG", "LH_1").catalog
    cat.unlink()
    with pytest.raises(SimBridgeInputError, match="group catalogue"):
        camels.find_twin_files(root, "IllustrisTNG", "LH_1")
    hydro_dir = camels.find_run_files(root, "IllustrisTNG", "LH_2").snapshot.parent
    shutil.rmtree(hydro_dir)
    with pytest.raises(SimBridgeInputError, match="no hydrodynamic twin"):
        camels.find_twin_files(root, "IllustrisTNG", "LH_2")
    with pytest.raises(SimBridgeInputError, match="no snapshot"):
        camels.find_run_files(root, "IllustrisTNG", "LH_9")

"""A paired CAMELS-format demo suite: N-body (``<Suite>_DM``) and hydrodynamic twins of a Latin
hypercube of (Omega_m, sigma_8, A_SN1, A_AGN1, A_SN2, A_AGN2), in the archive's layout.

Two layers:

* **Physics.** Each parameter set draws one Gaussian initial field with the Eisenstein-Hu
  linear spectrum of its cosmology (seed from the CosmoAstroSeed table) and evolves it with a
  particle-mesh code (:mod:`simbridge.sims.camels_cosmology`). Both twins share these initial
  conditions. The demo does not simulate baryons: the hydro twin's dark matter is the N-body
  result with a small seeded sub-voxel jitter (baryonic reaction), its gas cells trace the dark
  matter, and its galaxies come from a model of the FoF halos found in its own dark matter
  (:func:`galaxy_model`): central stellar mass from a double power-law stellar-to-halo mass
  relation lowered by A_SN1 (low masses) and A_AGN1 (high masses), plus an environment term
  (the dark-matter overdensity smoothed on 2 Mpc/h, 0.25 dex per standard deviation) and
  0.15 dex scatter; satellites Poisson with a mean rising with halo mass and environment. So
  galaxies depend on the halo, the feedback parameters and more than halo mass.
* **Layout.** ``Sims/<Suite>[_DM]/L25n256/LH/LH_<i>/snapshot_090.hdf5`` and
  ``FOF_Subfind/<Suite>[_DM]/L25n256/LH/LH_<i>/groups_090.hdf5`` (Group/Subhalo/IDs/Header as
  Subfind writes them), the N-body snapshot with only Header, CompressionInfo and PartType1
  (float32, low mantissa bits nulled, Blosc zstd level 5 with bit-shuffle, byte-shuffled IDs,
  65536-row chunks, particles not sorted by ID), and ``CosmoAstroSeed_<Suite>_L25n256_LH.txt``.
  ``layout: old`` writes the older names (``snap_033.hdf5``, ``fof_subhalo_tab_033.hdf5``,
  ``Sims/<Suite>/LH_<i>/``) instead.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np
from scipy.stats import qmc

from simbridge.extract.voxels import paint, readout_cic
from simbridge.io import atomic_output
from simbridge.models.training import derive_seed
from simbridge.sims.camels import NAME_GENERATIONS, suite_name
from simbridge.sims.camels_cosmology import (
    fourier_wavevectors,
    gaussian_random_field,
    linear_power,
    particle_mesh,
)
from simbridge.sims.fof import RHO_CRIT_MSUN_H_MPC_H3, friends_of_friends, group_properties

log = logging.getLogger(__name__)

PARAMETER_NAMES = ("Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2")
#: CAMELS LH ranges: Omega_m, sigma_8 uniform; feedback amplitudes log-uniform
PARAMETER_RANGES = {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0), "A_SN1": (0.25, 4.0),
                    "A_AGN1": (0.25, 4.0), "A_SN2": (0.5, 2.0), "A_AGN2": (0.5, 2.0)}
HUBBLE, OMEGA_B = 0.6711, 0.049
BOX_KPC_H = 25000.0
MANTISSA_BITS_KEPT = 15


def latin_hypercube(n_runs: int, seed: int) -> list[dict[str, float]]:
    """n_runs parameter sets (scipy's Latin hypercube sampler), feedback log-uniform."""
    unit = qmc.LatinHypercube(d=len(PARAMETER_NAMES), seed=derive_seed(seed, "camels_lh")
                              ).random(n_runs)
    rows = []
    for u in unit:
        row = {}
        for name, x in zip(PARAMETER_NAMES, u, strict=True):
            lo, hi = PARAMETER_RANGES[name]
            row[name] = float(lo + x * (hi - lo)) if name in ("Omega_m", "sigma_8") else \
                float(np.exp(np.log(lo) + x * (np.log(hi) - np.log(lo))))
        rows.append(row)
    return rows


def stellar_to_halo_mass(m_halo: np.ndarray) -> np.ndarray:
    """Central stellar mass (Msun/h) of halos of M_200c (Msun/h): Moster et al. 2010 form."""
    m1, norm, beta, gamma = 10**11.8, 0.035, 1.1, 0.6
    return 2.0 * norm * m_halo / ((m_halo / m1) ** -beta + (m_halo / m1) ** gamma)


def smoothed_log_density(pos: np.ndarray, box: float, n: int, radius: float) -> np.ndarray:
    """log10(1 + delta) of the particles on an n^3 CIC grid, Gaussian-smoothed (Mpc/h)."""
    rho = paint(pos, box, n)
    kx, ky, kz = fourier_wavevectors(n, box)
    k2 = kx**2 + ky**2 + kz**2
    smooth = np.fft.irfftn(np.fft.rfftn(rho / rho.mean()) * np.exp(-0.5 * k2 * radius**2),
                           s=(n, n, n), axes=(0, 1, 2))
    return np.log10(np.maximum(smooth, 1e-3))


def galaxy_model(halos: dict[str, np.ndarray], env_log_density: np.ndarray,
                 params: dict[str, float], rng: np.random.Generator, box: float
                 ) -> dict[str, np.ndarray]:
    """Galaxies of the hydro twin: per galaxy position (Mpc/h), stellar mass (Msun/h), host
    group and whether it is the central."""
    mass = np.where(halos["m200c"] > 0, halos["m200c"], 0.8 * halos["mass"])
    env = (env_log_density - env_log_density.mean()) / max(env_log_density.std(), 1e-6)
    low = 1.0 / (1.0 + mass / 1e12)
    log_ms = (np.log10(stellar_to_halo_mass(mass))
              - 0.35 * np.log10(params["A_SN1"]) * low
              - 0.35 * np.log10(params["A_AGN1"]) * (1.0 - low)
              - 0.1 * np.log10(params["A_SN2"]) + 0.25 * env
              + 0.15 * rng.standard_normal(len(mass)))
    pos, mstar, host, central = [halos["centre"]], [10**log_ms], [np.arange(len(mass))], \
        [np.ones(len(mass), bool)]
    n_sat = rng.poisson(np.where(mass > 1e12, (mass / 4e12) * np.exp(0.4 * env)
                                 / params["A_AGN2"]**0.3, 0.0))
    for g in np.flatnonzero(n_sat):
        k = n_sat[g]
        direction = rng.standard_normal((k, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        r = max(halos["r200c"][g], 0.1) * rng.uniform(0, 1, k) ** 1.5
        pos.append((halos["centre"][g] + direction * r[:, None]) % box)
        m_sub = 10 ** rng.uniform(11.0, np.log10(max(0.1 * mass[g], 2e11)), k)
        mstar.append(stellar_to_halo_mass(m_sub) * 10 ** (0.15 * rng.standard_normal(k)
                                                          + 0.1 * env[g]))
        host.append(np.full(k, g))
        central.append(np.zeros(k, bool))
    return {"pos": np.concatenate(pos), "mstar": np.concatenate(mstar),
            "group": np.concatenate(host), "central": np.concatenate(central)}


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------


def _header(fh: h5py.File, params: dict[str, float], numpart: list[int], mass_table: list[float]
            ) -> None:
    h = fh.create_group("Header")
    h.attrs["BoxSize"] = BOX_KPC_H
    h.attrs["HubbleParam"] = HUBBLE
    h.attrs["Omega0"] = params["Omega_m"]
    h.attrs["OmegaLambda"] = 1.0 - params["Omega_m"]
    h.attrs["OmegaBaryon"] = OMEGA_B
    h.attrs["Redshift"] = 2.220446049250313e-16
    h.attrs["Time"] = 0.9999999999999998
    h.attrs["MassTable"] = np.asarray(mass_table, np.float64)
    h.attrs["NumPart_ThisFile"] = np.asarray(numpart, np.int32)
    h.attrs["NumPart_Total"] = np.asarray(numpart, np.uint32)
    h.attrs["NumPart_Total_HighWord"] = np.zeros(6, np.uint32)
    h.attrs["NumFilesPerSnapshot"] = np.int32(1)
    h.attrs["UnitLength_in_cm"] = 3.085678e21
    h.attrs["UnitMass_in_g"] = 1.989e43
    h.attrs["UnitVelocity_in_cm_per_s"] = 1.0e5
    for flag in ("Flag_Cooling", "Flag_Sfr", "Flag_Feedback", "Flag_StellarAge",
                 "Flag_Metals", "Flag_DoublePrecision"):
        h.attrs[flag] = np.int32(0)


def null_low_mantissa(x: np.ndarray, keep_bits: int = MANTISSA_BITS_KEPT) -> np.ndarray:
    """float32 with the low (23 - keep_bits) mantissa bits zeroed (CAMELS' lossy step)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    mask = np.uint32((0xFFFFFFFF << (23 - keep_bits)) & 0xFFFFFFFF)
    return (bits & mask).view(np.float32)


def write_nbody_snapshot(path: Path, pos_mpc: np.ndarray, vel_kms: np.ndarray, ids: np.ndarray,
                         params: dict[str, float], particle_mass: float) -> None:
    """The N-body snapshot: Header, CompressionInfo, Blosc-compressed PartType1."""
    n = len(ids)
    chunk = (min(65536, n), 3)
    floats = hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE)
    ints = hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        _header(fh, params, [0, n, 0, 0, 0, 0], [0.0, particle_mass / 1e10, 0, 0, 0, 0])
        info = fh.create_group("CompressionInfo")
        info.attrs["json"] = json.dumps({"Coordinates": {"filter": "blosc-zstd-5-bitshuffle",
                                                         "mantissa_bits": MANTISSA_BITS_KEPT},
                                         "Velocities": {"filter": "blosc-zstd-5-bitshuffle",
                                                        "mantissa_bits": MANTISSA_BITS_KEPT},
                                         "ParticleIDs": {"filter": "blosc-zstd-5-shuffle"}})
        g = fh.create_group("PartType1")
        g.create_dataset("Coordinates", data=null_low_mantissa(pos_mpc * 1000.0), chunks=chunk,
                         **floats)
        g.create_dataset("Velocities", data=null_low_mantissa(vel_kms), chunks=chunk, **floats)
        g.create_dataset("ParticleIDs", data=ids.astype(np.uint32), chunks=(chunk[0],), **ints)


def write_hydro_snapshot(path: Path, dm_pos: np.ndarray, dm_vel: np.ndarray, ids: np.ndarray,
                         gas_pos: np.ndarray, stars: dict[str, np.ndarray],
                         black_holes: dict[str, np.ndarray], params: dict[str, float],
                         particle_mass: float, config: dict[str, Any]) -> None:
    """The hydro snapshot: Header, Config, Parameters, PartType0/1/4/5 (TNG dtypes)."""
    fb = OMEGA_B / params["Omega_m"]
    m_dm, m_gas = particle_mass * (1 - fb) / 1e10, particle_mass * fb / 1e10
    n = len(ids)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        _header(fh, params, [n, n, 0, 0, len(stars["pos"]), len(black_holes["pos"])],
                [0.0, m_dm, 0, 0, 0, 0])
        cfg = fh.create_group("Config")
        for k, v in config.items():
            cfg.attrs[k] = v
        par = fh.create_group("Parameters")
        for k, v in params.items():
            par.attrs[k] = v
        g0 = fh.create_group("PartType0")
        g0.create_dataset("Coordinates", data=(gas_pos * 1000.0).astype(np.float64))
        g0.create_dataset("Masses", data=np.full(n, m_gas, np.float32))
        g0.create_dataset("ParticleIDs", data=(ids + n).astype(np.uint64))
        g1 = fh.create_group("PartType1")
        g1.create_dataset("Coordinates", data=(dm_pos * 1000.0).astype(np.float64))
        g1.create_dataset("Velocities", data=dm_vel.astype(np.float32))
        g1.create_dataset("ParticleIDs", data=ids.astype(np.uint64))
        g4 = fh.create_group("PartType4")
        g4.create_dataset("Coordinates", data=(stars["pos"] * 1000.0).astype(np.float64))
        g4.create_dataset("Masses", data=(stars["mass"] / 1e10).astype(np.float32))
        g4.create_dataset("GFM_StellarFormationTime", data=stars["aform"].astype(np.float32))
        g4.create_dataset("ParticleIDs", data=(np.arange(len(stars["pos"])) + 2 * n
                                               ).astype(np.uint64))
        g5 = fh.create_group("PartType5")
        g5.create_dataset("Coordinates", data=(black_holes["pos"] * 1000.0).astype(np.float64))
        g5.create_dataset("BH_Mass", data=(black_holes["mass"] / 1e10).astype(np.float32))


def write_group_catalog(path: Path, params: dict[str, float], groups: dict[str, np.ndarray],
                        subhalos: dict[str, np.ndarray], member_ids: np.ndarray) -> None:
    """A Subfind-layout catalogue (Header, Group, Subhalo, IDs), TNG dtypes and units."""
    ng, ns = len(groups["GroupPos"]), len(subhalos["SubhaloPos"])
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        h = fh.create_group("Header")
        for k in ("Ngroups_ThisFile", "Ngroups_Total"):
            h.attrs[k] = np.int32(ng)
        for k in ("Nsubgroups_ThisFile", "Nsubgroups_Total"):
            h.attrs[k] = np.int32(ns)
        for k in ("Nids_ThisFile", "Nids_Total"):
            h.attrs[k] = np.int32(len(member_ids))
        h.attrs["NumFiles"] = np.int32(1)
        h.attrs["BoxSize"] = BOX_KPC_H
        h.attrs["HubbleParam"] = HUBBLE
        h.attrs["Omega0"] = params["Omega_m"]
        h.attrs["OmegaLambda"] = 1.0 - params["Omega_m"]
        h.attrs["Redshift"] = 2.220446049250313e-16
        h.attrs["Time"] = 0.9999999999999998
        for name, table in (("Group", groups), ("Subhalo", subhalos)):
            grp = fh.create_group(name)
            for k, v in table.items():
                grp.create_dataset(k, data=v)
        fh.create_group("IDs").create_dataset("ID", data=member_ids.astype(np.uint64))


def _catalog_tables(halos: dict[str, np.ndarray], n_sub: np.ndarray, sub: dict[str, np.ndarray]
                    ) -> tuple[dict, dict]:
    ng = len(halos["mass"])
    first = np.concatenate([[0], np.cumsum(n_sub)[:-1]]).astype(np.int32)
    len_type = np.zeros((ng, 6), np.int32)
    len_type[:, 1] = halos["length"]
    mass_type = np.zeros((ng, 6))
    groups = {
        "GroupPos": (halos["centre"] * 1000.0).astype(np.float32),
        "GroupMass": (halos["mass"] / 1e10).astype(np.float32),
        "GroupLen": halos["length"].astype(np.int32),
        "GroupLenType": len_type,
        "GroupMassType": mass_type.astype(np.float32),
        "GroupFirstSub": np.where(n_sub > 0, first, -1).astype(np.int32),
        "GroupNsubs": n_sub.astype(np.int32),
        "Group_M_Crit200": (halos["m200c"] / 1e10).astype(np.float32),
        "Group_R_Crit200": (halos["r200c"] * 1000.0).astype(np.float32),
    }
    groups["GroupMassType"][:, 1] = groups["GroupMass"]
    return groups, sub


def _dm_only_subhalos(halos: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    ng = len(halos["mass"])
    mass_type = np.zeros((ng, 6), np.float32)
    mass_type[:, 1] = halos["mass"] / 1e10
    len_type = np.zeros((ng, 6), np.int32)
    len_type[:, 1] = halos["length"]
    sub = {"SubhaloPos": (halos["centre"] * 1000.0).astype(np.float32),
           "SubhaloMass": mass_type[:, 1].copy(), "SubhaloMassType": mass_type,
           "SubhaloLenType": len_type, "SubhaloGrNr": np.arange(ng, dtype=np.int32),
           "SubhaloParent": np.zeros(ng, np.int32)}
    return np.ones(ng, np.int64), sub


def _hydro_subhalos(halos: dict[str, np.ndarray], galaxies: dict[str, np.ndarray],
                    n_star: np.ndarray) -> tuple[np.ndarray, dict, np.ndarray]:
    """Subhalos ordered by group, central first; returns (n_sub per group, table, order)."""
    order = np.lexsort((~galaxies["central"], galaxies["group"]))
    grp = galaxies["group"][order]
    ng = len(halos["mass"])
    n_sub = np.bincount(grp, minlength=ng)
    ns = len(order)
    mass_type = np.zeros((ns, 6), np.float32)
    mstar = galaxies["mstar"][order]
    mass_type[:, 4] = mstar / 1e10
    mass_type[:, 1] = np.where(galaxies["central"][order], halos["mass"][grp] * 0.9,
                               halos["mass"][grp] * 0.02) / 1e10
    len_type = np.zeros((ns, 6), np.int32)
    len_type[:, 4] = n_star[order]
    len_type[:, 1] = np.maximum((mass_type[:, 1] * 1e10 / (halos["mass"] / halos["length"])[grp]
                                 ).astype(np.int32), 1)
    # rough absolute magnitudes (U, B, V, K, g, r, i, z) from a fixed mass-to-light ratio
    m_r = 4.65 - 2.5 * np.log10(mstar / HUBBLE / 1.5)
    photometrics = (m_r[:, None] + np.array([1.4, 0.9, 0.4, -1.8, 0.6, 0.0, -0.3, -0.5])
                    ).astype(np.float32)
    sub = {"SubhaloPos": (galaxies["pos"][order] * 1000.0).astype(np.float32),
           "SubhaloMass": mass_type.sum(axis=1), "SubhaloMassType": mass_type,
           "SubhaloLenType": len_type, "SubhaloGrNr": grp.astype(np.int32),
           "SubhaloParent": np.where(galaxies["central"][order], 0, 0).astype(np.int32),
           "SubhaloStellarPhotometrics": photometrics}
    return n_sub, sub, order


def run_files(root: Path, suite: str, run: str, dark_matter_only: bool, layout: str
              ) -> tuple[Path, Path]:
    """(snapshot, catalogue) paths of a demo run in the chosen name generation."""
    snap_tpl, cat_tpls, z0 = NAME_GENERATIONS[layout]
    name = suite_name(suite, dark_matter_only)
    sub = Path(name) / "L25n256" / "LH" / run if layout == "new" else Path(name) / run
    return (root / "Sims" / sub / snap_tpl.format(snap=z0),
            root / "FOF_Subfind" / sub / cat_tpls[0].format(snap=z0))


def generate_run(root: Path, suite: str, run: str, params: dict[str, float], seed: int,
                 demo: dict[str, Any], layout: str = "new") -> dict[str, Any]:
    """Write both twins of one parameter set; returns a summary row."""
    n = int(demo["particles_per_side"])
    box = BOX_KPC_H / 1000.0
    rng = np.random.default_rng(seed)
    power = linear_power(params["Omega_m"], params["sigma_8"], OMEGA_B, HUBBLE)
    delta_k = gaussian_random_field(n, box, power, rng)
    pos, vel = particle_mesh(n, box, delta_k, params["Omega_m"], a_init=demo["a_init"],
                             n_steps=int(demo["pm_steps"]))
    particle_mass = params["Omega_m"] * RHO_CRIT_MSUN_H_MPC_H3 * box**3 / n**3
    ids = np.arange(n**3, dtype=np.int64) + 1
    ll = demo["linking_length"] * box / n
    summary = {"run": run, **params, "seed": seed, "particles_per_side": n}
    for dm_only in (True, False):
        twin_rng = np.random.default_rng(derive_seed(seed, "twin", dm_only))
        if dm_only:
            p = pos
        else:  # baryonic reaction stand-in: a seeded sub-voxel jitter of the same particles
            p = np.mod(pos + demo["hydro_jitter_mpc_h"] * twin_rng.standard_normal(pos.shape),
                       box)
        labels = friends_of_friends(p, box, ll, int(demo["min_group_particles"]))
        halos = group_properties(p, labels, particle_mass, box)
        members = np.argsort(labels, kind="stable")
        members = members[labels[members] >= 0]
        snap, cat = run_files(root, suite, run, dm_only, layout)
        if dm_only:
            order = twin_rng.permutation(n**3)  # N-body files are not sorted by ID
            write_nbody_snapshot(snap, pos[order], vel[order], ids[order], params,
                                 particle_mass)
            n_sub, sub = _dm_only_subhalos(halos)
            groups, sub = _catalog_tables(halos, n_sub, sub)
            write_group_catalog(cat, params, groups, sub, ids[members])
            summary["n_groups_dm"] = int(len(halos["mass"]))
            continue
        env = readout_cic(smoothed_log_density(p, box, 32, demo["environment_radius_mpc_h"]),
                          halos["centre"], box)
        galaxies = galaxy_model(halos, env, params, twin_rng, box)
        n_star = np.clip(np.round(galaxies["mstar"] / demo["star_particle_mass_msun_h"]), 1,
                         64).astype(np.int64)
        n_sub, sub, order = _hydro_subhalos(halos, galaxies, n_star)
        star_host = np.repeat(np.arange(len(order)), n_star[order])
        stars = {"pos": (sub["SubhaloPos"][star_host] / 1000.0
                         + 0.005 * twin_rng.standard_normal((len(star_host), 3))) % box,
                 "mass": galaxies["mstar"][order][star_host] / n_star[order][star_host],
                 "aform": twin_rng.uniform(0.2, 1.0, len(star_host))}
        central_groups = np.flatnonzero(halos["m200c"] > 5e11)
        bhs = {"pos": halos["centre"][central_groups],
               "mass": 1e-3 * stellar_to_halo_mass(halos["m200c"][central_groups])}
        gas = np.mod(p + 0.05 * twin_rng.standard_normal(p.shape), box)
        write_hydro_snapshot(snap, p, vel, ids, gas, stars, bhs, params, particle_mass,
                             {"DEMO_SUITE": 1, "PMGRID": 2 * n})
        groups, sub = _catalog_tables(halos, n_sub, sub)
        groups["GroupLenType"][:, 4] = np.bincount(galaxies["group"], weights=n_star,
                                                   minlength=len(n_sub)).astype(np.int32)
        groups["GroupMassType"][:, 4] = np.bincount(galaxies["group"],
                                                    weights=galaxies["mstar"] / 1e10,
                                                    minlength=len(n_sub)).astype(np.float32)
        write_group_catalog(cat, params, groups, sub, ids[members])
        summary["n_groups_hydro"] = int(len(halos["mass"]))
        summary["n_galaxies"] = int(len(galaxies["mstar"]))
    return summary


def _generate_run_args(args: tuple) -> dict[str, Any]:
    log.info("demo run %s: %s", args[2], args[3])
    return generate_run(*args)


def parameter_table_file(root: Path, suite: str, layout: str) -> Path:
    """Where the demo writes CosmoAstroSeed_<suite>_L25n256_LH.txt."""
    name = f"CosmoAstroSeed_{suite}_L25n256_LH.txt"
    return root / "Sims" / suite / ("L25n256/LH" if layout == "new" else "") / name


def generate_demo_suite(out_dir: str | Path, demo: dict[str, Any], seed: int, suite: str =
                        "IllustrisTNG", workers: int = 1) -> dict[str, Any]:
    """Write the paired demo suite (all runs, both twins, catalogues and the parameter table);
    ``workers`` processes write runs in parallel (each run's draws depend only on its seed)."""
    root = Path(out_dir)
    layout = demo.get("layout", "new")
    rows = latin_hypercube(int(demo["n_runs"]), seed)
    seeds = [derive_seed(seed, "camels_run", i) % (2**31) for i in range(len(rows))]
    jobs = [(root, suite, f"LH_{i}", params, seeds[i], demo, layout)
            for i, params in enumerate(rows)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            runs = list(pool.map(_generate_run_args, jobs))
    else:
        runs = [_generate_run_args(job) for job in jobs]
    table_lines = ["#Name " + " ".join(PARAMETER_NAMES) + " seed"]
    for i, params in enumerate(rows):
        table_lines.append(f"LH_{i} " + " ".join(f"{params[k]:.5f}" for k in PARAMETER_NAMES)
                           + f" {seeds[i]}")
    table = parameter_table_file(root, suite, layout)
    table.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(table) as tmp:
        tmp.write_text("\n".join(table_lines) + "\n")
    return {"suite": suite, "layout": layout, "runs": runs, "parameter_table": str(table)}

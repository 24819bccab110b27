"""TNG map extraction: galaxy selection, batched reading, global properties, per-galaxy maps.

Three steps, one workflow rule each:
1. :func:`write_galaxy_catalog` selects subhalos above the stellar-mass cut of one snapshot and
   assigns them to a fixed number of batches (contiguous in particle order, balanced by size).
2. :func:`measure_batch` reads each batch's star masses, formation times and StellarAssembly
   flags and writes every galaxy's global ex-situ fraction (what balancing needs).
3. :func:`extract_batch` reads each batch's star particles with few contiguous ``loadSubset``
   calls and writes the condition and ex-situ maps of every line of sight, with the number of
   lines of sight per galaxy taken from the balancing plan (:mod:`simbridge.dataset.balance`).

The per-split datasets are assembled from the batch files by :mod:`simbridge.dataset.build`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from simbridge import units
from simbridge.errors import SimBridgeInputError
from simbridge.extract.maps import (
    MAP_CHANNELS,
    MAP_UNITS,
    line_of_sight_rotations,
    project_galaxy_maps,
)
from simbridge.io import atomic_output, read_table, write_provenance
from simbridge.sims import tng

log = logging.getLogger(__name__)

CATALOG_FIELDS = (
    "SubhaloMassType",
    "SubhaloHalfmassRadType",
    "SubhaloPos",
    "SubhaloVel",
    "SubhaloLenType",
)
#: Per-sample datasets of the maps file, their dtypes and units.
SAMPLE_FIELDS: dict[str, tuple[str, str]] = {
    "subhalo_id": ("i8", "Subfind ID at the sample's snapshot"),
    "snapshot": ("i2", "snapshot number"),
    "redshift": ("f8", "redshift of the snapshot"),
    "view_index": ("i2", "index of the line of sight for this galaxy"),
    "pixel_size_kpc": ("f8", "physical kpc per pixel"),
    "half_width_kpc": ("f8", "physical kpc from map centre to edge"),
    "stellar_mass_msun": ("f8", "SubhaloMassType[4] in Msun"),
    "half_mass_radius_kpc": ("f8", "stellar half-mass radius, physical kpc"),
    "exsitu_fraction_global": ("f4", "mass fraction of the galaxy's stars that are ex situ"),
}
MANIFEST_COLUMNS = [
    "simulation", "snapshot", "redshift", "subhalo_id", "status", "reason", "stellar_mass_msun",
    "half_mass_radius_kpc", "exsitu_fraction_global", "n_star_particles", "n_wind_particles",
    "n_views", "first_sample", "batch",
]


class GalaxySkipped(Exception):
    """A galaxy cannot be mapped; the message is the reason recorded in the manifest."""


# --------------------------------------------------------------------------- selection

def select_galaxies(
    base_path: str | Path, snapshot: int, stellar_mass_min_msun: float
) -> pd.DataFrame:
    """Subhalos of one snapshot above the stellar-mass cut, with their global properties.

    Rows with unusable catalog entries (SubhaloFlag == 0, non-finite values, zero radius) are
    kept with ``status='skipped'`` and the reason.
    """
    header = tng.read_snapshot_header(base_path, snapshot)
    tng.check_group_catalog_header(base_path, header)
    fields = list(CATALOG_FIELDS)
    has_flag = tng.subhalo_has_field(base_path, snapshot, "SubhaloFlag")
    if has_flag:
        fields.append("SubhaloFlag")
    cat = tng.read_subhalo_catalog(base_path, snapshot, fields)
    h, a = header.hubble_param, header.scale_factor
    mass_type = np.asarray(cat["SubhaloMassType"], dtype=np.float64)
    stellar_mass = units.code_mass_to_msun(mass_type[:, tng.STARS], h)
    with np.errstate(invalid="ignore"):
        ids = np.flatnonzero(stellar_mass >= stellar_mass_min_msun)
    offsets = tng.read_subhalo_particle_offsets(base_path, snapshot)
    pos = np.asarray(cat["SubhaloPos"], dtype=np.float64)[ids]
    vel = np.asarray(cat["SubhaloVel"], dtype=np.float64)[ids]
    radius = units.comoving_ckpc_h_to_physical_kpc(
        np.asarray(cat["SubhaloHalfmassRadType"], dtype=np.float64)[ids, tng.STARS], a, h
    )
    df = pd.DataFrame(
        {
            "subhalo_id": ids.astype(np.int64),
            "snapshot": int(snapshot),
            "redshift": header.redshift,
            "stellar_mass_msun": stellar_mass[ids],
            "half_mass_radius_kpc": radius,
            "pos_x_ckpc_h": pos[:, 0], "pos_y_ckpc_h": pos[:, 1], "pos_z_ckpc_h": pos[:, 2],
            "vel_x_kms": vel[:, 0], "vel_y_kms": vel[:, 1], "vel_z_kms": vel[:, 2],
            "n_part4": np.asarray(cat["SubhaloLenType"], dtype=np.int64)[ids, tng.STARS],
            "offset_part4": offsets[ids, tng.STARS],
        }
    )
    reason = np.full(len(df), "", dtype=object)
    if has_flag:
        flagged = np.asarray(cat["SubhaloFlag"])[ids] == 0
        reason[flagged] = "SubhaloFlag=0 (not of cosmological origin)"
    finite = np.isfinite(np.c_[pos, vel, radius]).all(axis=1)
    reason[~finite] = "non-finite SubhaloPos, SubhaloVel or SubhaloHalfmassRadType in the catalog"
    reason[finite & (radius <= 0)] = "zero stellar half-mass radius in the catalog"
    df["status"] = np.where(reason == "", "selected", "skipped")
    df["reason"] = reason
    return df


def assign_batches(catalog: pd.DataFrame, n_batches: int) -> pd.DataFrame:
    """Split the selected galaxies into ``n_batches`` contiguous ranges of similar particle count.

    Galaxies are ordered by particle offset, so each batch reads one contiguous range of the
    snapshot. Skipped galaxies get batch -1.
    """
    catalog = catalog.sort_values("offset_part4", kind="stable").reset_index(drop=True)
    batch = np.full(len(catalog), -1, dtype=np.int64)
    selected = (catalog["status"] == "selected").to_numpy()
    weight = catalog.loc[selected, "n_part4"].to_numpy(dtype=np.float64) + 1.0
    if weight.size:
        start = np.cumsum(weight) - weight  # particles before each galaxy
        batch[selected] = np.minimum((start / weight.sum() * n_batches).astype(np.int64),
                                     n_batches - 1)
    catalog["batch"] = batch
    return catalog.sort_values("subhalo_id", kind="stable").reset_index(drop=True)


def write_galaxy_catalog(
    base_path: str | Path, snapshot: int, tng_config: dict[str, Any], out_csv: str | Path
) -> pd.DataFrame:
    """Select, batch and write the galaxy catalog CSV of one snapshot (workflow step 1)."""
    df = select_galaxies(base_path, snapshot, tng_config["stellar_mass_min_msun"])
    if not (df["status"] == "selected").any():
        raise SimBridgeInputError(
            f"no subhalo of snapshot {snapshot} has a stellar mass above "
            f"{tng_config['stellar_mass_min_msun']:.3g} Msun",
            tng.snapshot_chunk_path(base_path, snapshot, 0),
            "lower tng.stellar_mass_min_msun in config.yaml or check tng.base_path",
        )
    df = assign_batches(df, tng_config["n_batches"])
    with atomic_output(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    log.info("snapshot %d: %d galaxies selected, %d skipped", snapshot,
             (df["status"] == "selected").sum(), (df["status"] == "skipped").sum())
    return df


# --------------------------------------------------------------------------- one galaxy

@dataclass
class GalaxyResult:
    """Maps and global properties of one galaxy."""

    conditions: np.ndarray       # (n_views, 5, npix, npix)
    exsitu_fraction: np.ndarray  # (n_views, npix, npix)
    particle_count: np.ndarray   # (n_views, npix, npix)
    galaxy_mask: np.ndarray      # (n_views, npix, npix)
    rotations: np.ndarray        # (n_views, 3, 3)
    pixel_size_kpc: float
    half_width_kpc: float
    exsitu_fraction_global: float
    n_star_particles: int
    n_wind_particles: int


MEASURE_FIELDS: tuple[str, ...] = ("Masses", "GFM_StellarFormationTime")
MEASURE_COLUMNS = [
    "snapshot", "subhalo_id", "batch", "status", "reason", "stellar_mass_msun",
    "exsitu_fraction_global", "n_star_particles", "n_wind_particles",
]


#: Fields whose values cannot be negative; a galaxy holding one is skipped like one with NaNs.
NON_NEGATIVE_FIELDS = ("Masses", "GFM_Metallicity")
#: Formation scale factors up to this relative margin above the snapshot's are float32
#: rounding of stars born in its last time step (age 0), not stars from the future.
FORMATION_TIME_RTOL = 1e-6


def global_exsitu_fraction(
    stars: dict[str, np.ndarray], insitu: np.ndarray, hubble_param: float,
    min_star_particles: int, scale_factor: float | None = None,
) -> tuple[float, int, int]:
    """(ex-situ mass fraction, star particles, wind cells) of one galaxy's PartType4 elements.

    Wind cells (formation time <= 0) are dropped; the fraction is over the star mass that has a
    StellarAssembly label. Every field given is checked for non-finite values, masses and
    metallicities for negative ones, and (given the snapshot's ``scale_factor``) formation
    times for stars formed after the snapshot (negative ages).
    Raises GalaxySkipped with the reason for a galaxy that cannot be used.
    """
    aform = np.asarray(stars["GFM_StellarFormationTime"])
    is_star = units.is_star_not_wind(aform)
    n_wind = int((~is_star).sum())
    n_star = int(is_star.sum())
    for field in stars:
        values = np.asarray(stars[field])[is_star]
        n_bad = int((~np.isfinite(values)).sum())
        if n_bad:
            raise GalaxySkipped(f"{n_bad} non-finite values in PartType4/{field}")
        if field in NON_NEGATIVE_FIELDS:
            n_negative = int((values < 0).sum())
            if n_negative:
                raise GalaxySkipped(f"{n_negative} negative values in PartType4/{field} "
                                    f"(minimum {float(values.min()):.3g})")
    if scale_factor is not None:
        future = aform[is_star] > scale_factor * (1.0 + FORMATION_TIME_RTOL)
        if future.any():
            raise GalaxySkipped(
                f"{int(future.sum())} star particles formed after the snapshot "
                f"(PartType4/GFM_StellarFormationTime up to {float(aform[is_star].max()):.6g} "
                f"> scale factor {scale_factor:.6g}: negative ages)")
    if n_star < min_star_particles:
        raise GalaxySkipped(
            f"only {n_star} star particles (wind excluded) < "
            f"maps.min_star_particles={min_star_particles}"
        )
    mass_msun = units.code_mass_to_msun(np.asarray(stars["Masses"])[is_star], hubble_param)
    flags = np.asarray(insitu)[is_star]
    labelled = mass_msun[flags >= 0].sum()
    if labelled <= 0:
        raise GalaxySkipped("no star particle has an in-situ/ex-situ label in StellarAssembly")
    return float(mass_msun[flags == 0].sum() / labelled), n_star, n_wind


@dataclass(frozen=True)
class StarFrame:
    """The star particles of one galaxy (winds dropped) in physical units around its centre."""

    is_star: np.ndarray  # (N_all,) bool: which PartType4 elements are stars (not wind)
    pos_kpc: np.ndarray  # (N, 3) physical kpc from the centre, periodic wrap applied
    vel_kms: np.ndarray  # (N, 3) peculiar km/s relative to the systemic velocity
    mass_msun: np.ndarray
    age_gyr: np.ndarray
    metallicity: np.ndarray


def star_frame(stars: dict[str, np.ndarray], header: tng.SnapshotHeader,
               centre_ckpc_h: np.ndarray, systemic_velocity_kms: np.ndarray) -> StarFrame:
    """PartType4 elements in code units to a StarFrame (the workflow's physics conventions).

    Wind cells (formation time <= 0) are dropped; positions are wrapped periodically around the
    centre and converted to physical kpc; snapshot velocities get sqrt(a) and lose the systemic
    velocity (SubhaloVel, already physical); ages use the header's cosmology."""
    a, h = header.scale_factor, header.hubble_param
    aform = np.asarray(stars["GFM_StellarFormationTime"])
    is_star = units.is_star_not_wind(aform)
    offset = units.periodic_offset(stars["Coordinates"][is_star], centre_ckpc_h,
                                   header.box_size_ckpc_h)
    # stars of the snapshot's last time step may round to a hair below age 0: clip to 0
    age_gyr = np.maximum(units.stellar_age_gyr(aform[is_star], a, h, header.omega_matter,
                                               header.omega_lambda), 0.0)
    return StarFrame(
        is_star=is_star,
        pos_kpc=units.comoving_ckpc_h_to_physical_kpc(offset, a, h),
        vel_kms=(units.snapshot_velocity_to_peculiar_kms(stars["Velocities"][is_star], a)
                 - np.asarray(systemic_velocity_kms, dtype=np.float64)),
        mass_msun=units.code_mass_to_msun(stars["Masses"][is_star], h),
        age_gyr=age_gyr,
        metallicity=np.asarray(stars["GFM_Metallicity"][is_star], dtype=np.float64),
    )


def galaxy_maps_from_particles(
    stars: dict[str, np.ndarray],
    insitu: np.ndarray,
    header: tng.SnapshotHeader,
    centre_ckpc_h: np.ndarray,
    systemic_velocity_kms: np.ndarray,
    half_mass_radius_kpc: float,
    rotations: np.ndarray,
    maps_config: dict[str, Any],
) -> GalaxyResult:
    """Maps of one galaxy from its PartType4 elements in code units (conventions:
    :func:`star_frame`). Raises GalaxySkipped with the reason for a galaxy that cannot be
    mapped."""
    return galaxy_maps_from_frame(
        star_frame(stars, header, centre_ckpc_h, systemic_velocity_kms), stars, insitu, header,
        half_mass_radius_kpc, rotations, maps_config)


def galaxy_maps_from_frame(
    frame: StarFrame,
    stars: dict[str, np.ndarray],
    insitu: np.ndarray,
    header: tng.SnapshotHeader,
    half_mass_radius_kpc: float,
    rotations: np.ndarray,
    maps_config: dict[str, Any],
) -> GalaxyResult:
    """Maps of one galaxy from its StarFrame (``stars`` and ``insitu`` for the global ex-situ
    fraction and the particle counts); GalaxySkipped for a galaxy that cannot be mapped."""
    a, h = header.scale_factor, header.hubble_param
    exsitu_global, n_star, n_wind = global_exsitu_fraction(
        {f: stars[f] for f in tng.STAR_FIELDS}, insitu, h, maps_config["min_star_particles"], a)
    flags = np.asarray(insitu)[frame.is_star]
    half_width = maps_config["fov_half_mass_radii"] * half_mass_radius_kpc
    views = [
        project_galaxy_maps(frame.pos_kpc, frame.vel_kms, frame.mass_msun, frame.age_gyr,
                            frame.metallicity, flags, rot,
                            maps_config["npix"], half_width,
                            maps_config["min_particles_per_pixel"])
        for rot in rotations
    ]
    return GalaxyResult(
        conditions=np.stack([v.conditions for v in views]),
        exsitu_fraction=np.stack([v.exsitu_fraction for v in views]),
        particle_count=np.stack([v.particle_count for v in views]),
        galaxy_mask=np.stack([v.galaxy_mask for v in views]),
        rotations=np.asarray(rotations, dtype=np.float64),
        pixel_size_kpc=views[0].pixel_size_kpc,
        half_width_kpc=half_width,
        exsitu_fraction_global=exsitu_global,
        n_star_particles=n_star,
        n_wind_particles=n_wind,
    )


def galaxy_rotations(seed: int, snapshot: int, subhalo_id: int, n_views: int) -> np.ndarray:
    """Seeded, well-spread lines of sight of one galaxy, independent of batching."""
    rng = np.random.default_rng([int(seed), int(snapshot), int(subhalo_id)])
    return line_of_sight_rotations(n_views, rng)


# --------------------------------------------------------------------------- one batch

def read_ranges(
    offsets: np.ndarray, lengths: np.ndarray, max_gap: int, max_length: int | None = None
) -> list[tuple[int, int, np.ndarray]]:
    """Group galaxies (sorted by offset) into contiguous reads: (start, stop, member indices).

    Consecutive galaxies share one read when the unselected particles between them number at
    most ``max_gap``; the read then covers the gap too, which costs less than another call.
    With ``max_length``, a read is not extended beyond that many particles (a single galaxy
    larger than that still gets one read of its own).
    """
    order = np.argsort(offsets, kind="stable")
    ranges: list[tuple[int, int, list[int]]] = []
    for i in order:
        start, stop = int(offsets[i]), int(offsets[i] + lengths[i])
        too_long = (max_length is not None and ranges
                    and max(ranges[-1][1], stop) - ranges[-1][0] > max_length)
        if ranges and start - ranges[-1][1] <= max_gap and not too_long:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop), ranges[-1][2] + [int(i)])
        else:
            ranges.append((start, stop, [int(i)]))
    return [(s, e, np.asarray(m, dtype=np.int64)) for s, e, m in ranges]


def iter_batch_particles(
    base_path: str | Path,
    header: tng.SnapshotHeader,
    galaxies: pd.DataFrame,
    max_read_gap_particles: int,
    fields: Sequence[str] = tng.STAR_FIELDS,
) -> Iterator[tuple[int, dict[str, np.ndarray], np.ndarray]]:
    """Yield (row index, PartType4 ``fields``, InSitu flags) for every galaxy of a batch.

    Galaxies close in particle order share one contiguous ``loadSubset`` read (and one
    StellarAssembly slice, checked against the snapshot's ParticleIDs) instead of one read each.
    """
    chunk_offsets = tng.read_chunk_offsets(base_path, header)
    sa_path = tng.check_stellar_assembly(base_path, header)
    offsets = galaxies["offset_part4"].to_numpy()
    lengths = galaxies["n_part4"].to_numpy()
    read_fields = [*fields, "ParticleIDs"]
    for start, stop, members in read_ranges(offsets, lengths, max_read_gap_particles):
        stars = tng.load_star_range(base_path, header, chunk_offsets, start, stop - start,
                                    read_fields)
        insitu = tng.load_insitu_range(sa_path, start, stop - start, stars["ParticleIDs"])
        for i in members:
            sl = slice(int(offsets[i]) - start, int(offsets[i] + lengths[i]) - start)
            yield int(i), {f: stars[f][sl] for f in fields}, insitu[sl]


def map_batch(
    base_path: str | Path,
    header: tng.SnapshotHeader,
    galaxies: pd.DataFrame,
    config: dict[str, Any],
    progress: bool = True,
) -> tuple[dict[int, GalaxyResult], dict[int, str]]:
    """Read and map every galaxy of a batch: results and skip reasons keyed by row index.

    ``galaxies`` needs an ``n_views`` column (lines of sight per galaxy, from the balancing
    plan) besides the catalog's columns.
    """
    maps_cfg = config["maps"]
    results: dict[int, GalaxyResult] = {}
    reasons: dict[int, str] = {}
    particles = iter_batch_particles(base_path, header, galaxies,
                                     config["tng"]["max_read_gap_particles"])
    desc = f"snapshot {header.snapshot:03d}: mapping galaxies"
    for i, stars, insitu in tqdm(particles, total=len(galaxies), desc=desc, unit="galaxy",
                                 disable=not progress, mininterval=2.0):
        row = galaxies.iloc[i]
        try:
            results[i] = galaxy_maps_from_particles(
                stars,
                insitu,
                header,
                np.array([row.pos_x_ckpc_h, row.pos_y_ckpc_h, row.pos_z_ckpc_h]),
                np.array([row.vel_x_kms, row.vel_y_kms, row.vel_z_kms]),
                float(row.half_mass_radius_kpc),
                galaxy_rotations(config["seed"], header.snapshot, int(row.subhalo_id),
                                 int(row.n_views)),
                maps_cfg,
            )
        except GalaxySkipped as skip:
            reasons[i] = str(skip)
            log.warning("snapshot %d subhalo %d skipped: %s", header.snapshot, row.subhalo_id,
                        skip)
    return results, reasons


def batch_galaxies(catalog_csv: str | Path, batch: int) -> pd.DataFrame:
    """The catalog rows of one extraction batch (skipped galaxies have batch -1)."""
    catalog = read_table(catalog_csv)
    return catalog[catalog["batch"] == batch].reset_index(drop=True)


def measure_batch(
    base_path: str | Path,
    snapshot: int,
    catalog_csv: str | Path,
    batch: int,
    config: dict[str, Any],
    out_csv: str | Path,
    progress: bool = True,
) -> pd.DataFrame:
    """Global ex-situ fraction of every galaxy in one batch of one snapshot (workflow step 2).

    Reads only star masses, formation times and the StellarAssembly flags; a galaxy that cannot
    be used (too few star particles, non-finite values, no labels) gets ``status='skipped'``
    and the reason, so that it is never planned any view.
    """
    header = tng.read_snapshot_header(base_path, snapshot)
    galaxies = batch_galaxies(catalog_csv, batch)
    rows = []
    particles = iter_batch_particles(base_path, header, galaxies,
                                     config["tng"]["max_read_gap_particles"], MEASURE_FIELDS)
    desc = f"snapshot {header.snapshot:03d}: measuring galaxies"
    for i, stars, insitu in tqdm(particles, total=len(galaxies), desc=desc, unit="galaxy",
                                 disable=not progress, mininterval=2.0):
        row = galaxies.iloc[i]
        entry = {"snapshot": int(snapshot), "subhalo_id": int(row.subhalo_id),
                 "batch": int(batch), "status": "measured", "reason": "",
                 "stellar_mass_msun": float(row.stellar_mass_msun),
                 "exsitu_fraction_global": np.nan, "n_star_particles": -1,
                 "n_wind_particles": -1}
        try:
            frac, n_star, n_wind = global_exsitu_fraction(
                stars, insitu, header.hubble_param, config["maps"]["min_star_particles"],
                header.scale_factor)
            entry.update(exsitu_fraction_global=frac, n_star_particles=n_star,
                         n_wind_particles=n_wind)
        except GalaxySkipped as skip:
            entry.update(status="skipped", reason=str(skip))
            log.warning("snapshot %d subhalo %d skipped: %s", snapshot, row.subhalo_id, skip)
        rows.append(entry)
    out = pd.DataFrame(rows, columns=MEASURE_COLUMNS).sort_values("subhalo_id", kind="stable")
    with atomic_output(out_csv) as tmp:
        out.to_csv(tmp, index=False)
    return out


def extract_batch(
    base_path: str | Path,
    snapshot: int,
    catalog_csv: str | Path,
    batch: int,
    config: dict[str, Any],
    out_h5: str | Path,
    out_csv: str | Path,
    plan_csv: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Maps of every galaxy in one batch of one snapshot (workflow step 3).

    The number of lines of sight per galaxy comes from the balancing plan ``plan_csv``
    (:func:`simbridge.dataset.balance.write_view_plan`); galaxies the plan marks as skipped are
    recorded with its reason and not read. Without a plan every galaxy gets
    ``balancing.min_views`` views. Writes ``out_h5`` (per-sample maps) and ``out_csv`` (one row
    per galaxy, with skip reasons).
    """
    header = tng.read_snapshot_header(base_path, snapshot)
    galaxies = batch_galaxies(catalog_csv, batch)
    reasons: dict[int, str] = {}
    if plan_csv is None:
        galaxies["n_views"] = int(config["balancing"]["min_views"])
    else:
        plan = read_table(plan_csv)
        plan = plan[plan["snapshot"] == snapshot].set_index("subhalo_id")
        missing = sorted(set(galaxies["subhalo_id"]) - set(plan.index))
        if missing:
            raise SimBridgeInputError(
                f"the balancing plan has no row for subhalos {missing[:5]} of snapshot "
                f"{snapshot}", plan_csv,
                "the plan is older than the galaxy catalog: rerun the workflow "
                "(snakemake --rerun-incomplete) so that it is rebuilt")
        planned = plan.loc[galaxies["subhalo_id"]]
        galaxies["n_views"] = planned["n_views"].to_numpy(dtype=np.int64)
        unplanned = np.flatnonzero(planned["status"].to_numpy() != "measured")
        reasons = dict(zip(unplanned.tolist(),
                           planned["reason"].to_numpy()[unplanned].astype(str), strict=True))
    npix = config["maps"]["npix"]
    todo = galaxies.drop(index=list(reasons)).reset_index()
    mapped, skipped = map_batch(base_path, header, todo, config, progress)
    results = {int(todo.loc[k, "index"]): res for k, res in mapped.items()}
    reasons.update({int(todo.loc[k, "index"]): why for k, why in skipped.items()})
    sa_path = tng.stellar_assembly_path(base_path, snapshot)

    rows = []
    sample = 0
    for i, row in galaxies.iterrows():
        res = results.get(int(i))
        rows.append({
            "simulation": config["tng"]["simulation_name"],
            "snapshot": int(snapshot),
            "redshift": header.redshift,
            "subhalo_id": int(row.subhalo_id),
            "status": "skipped" if res is None else "extracted",
            "reason": reasons.get(int(i), ""),
            "stellar_mass_msun": row.stellar_mass_msun,
            "half_mass_radius_kpc": row.half_mass_radius_kpc,
            "exsitu_fraction_global": np.nan if res is None else res.exsitu_fraction_global,
            "n_star_particles": -1 if res is None else res.n_star_particles,
            "n_wind_particles": -1 if res is None else res.n_wind_particles,
            "n_views": 0 if res is None else len(res.rotations),
            "first_sample": -1 if res is None else sample,
            "batch": int(batch),
        })
        if res is not None:
            sample += len(res.rotations)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)

    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        create_sample_datasets(h5, sample, npix)
        k = 0
        for i in range(len(galaxies)):
            res = results.get(i)
            if res is None:
                continue
            n = len(res.rotations)
            sl = slice(k, k + n)
            h5["conditions"][sl] = res.conditions
            h5["exsitu_fraction_map"][sl] = res.exsitu_fraction
            h5["particle_count"][sl] = res.particle_count
            h5["galaxy_mask"][sl] = res.galaxy_mask
            h5["rotation"][sl] = res.rotations
            row = galaxies.iloc[i]
            per_sample = {
                "subhalo_id": row.subhalo_id, "snapshot": snapshot, "redshift": header.redshift,
                "view_index": np.arange(n), "pixel_size_kpc": res.pixel_size_kpc,
                "half_width_kpc": res.half_width_kpc, "stellar_mass_msun": row.stellar_mass_msun,
                "half_mass_radius_kpc": row.half_mass_radius_kpc,
                "exsitu_fraction_global": res.exsitu_fraction_global,
            }
            for name, value in per_sample.items():
                h5[name][sl] = value
            k += n
        h5.attrs["n_galaxies"] = len(results)
        write_provenance(h5, config, config["seed"], _input_files(base_path, header, sa_path))
    with atomic_output(out_csv) as tmp:
        manifest.to_csv(tmp, index=False)
    return manifest


def _input_files(base_path: str | Path, header: tng.SnapshotHeader, sa_path: Path) -> list[str]:
    """Archive files a batch depends on (for the provenance record)."""
    files = [str(p) for p in tng.snapshot_chunk_paths(base_path, header)]
    files += [str(p) for p in tng.group_catalog_paths(base_path, header.snapshot)]
    off = tng.offsets_path(base_path, header.snapshot)
    if off.is_file():
        files.append(str(off))
    files.append(str(sa_path))
    return files


def create_sample_datasets(
    h5: h5py.File, n: int, npix: int, extra_fields: dict[str, tuple[str, str]] | None = None
) -> None:
    """Create the per-sample datasets, chunked one sample per chunk for random access.

    ``extra_fields`` adds 1-d per-sample datasets (name -> (dtype, units)).
    """
    def maps(name: str, shape: tuple[int, ...], dtype: str, unit: str) -> None:
        ds = h5.create_dataset(name, shape=(n, *shape), dtype=dtype,
                               chunks=(1, *shape) if n else None,
                               compression="lzf" if n else None, track_times=False)
        ds.attrs["units"] = unit

    maps("conditions", (len(MAP_CHANNELS), npix, npix), "f4", "see channel_units")
    h5["conditions"].attrs["channels"] = list(MAP_CHANNELS)
    h5["conditions"].attrs["channel_units"] = [MAP_UNITS[c] for c in MAP_CHANNELS]
    maps("exsitu_fraction_map", (npix, npix), "f4", MAP_UNITS["exsitu_fraction"])
    maps("particle_count", (npix, npix), "i4", MAP_UNITS["particle_count"])
    maps("galaxy_mask", (npix, npix), "u1", "1 if the pixel holds enough particles, else 0")
    maps("rotation", (3, 3), "f8", "rows: image x, image y, line of sight (unit vectors)")
    for name, (dtype, unit) in {**SAMPLE_FIELDS, **(extra_fields or {})}.items():
        ds = h5.create_dataset(name, shape=(n,), dtype=dtype, track_times=False)
        ds.attrs["units"] = unit

"""A synthetic IllustrisTNG simulation, written exactly as the archive lays it out on disk.

Two layers:

* :func:`write_tng_snapshot` writes one snapshot of hand-made particles and catalog entries
  (code units, FoF order) as ``snapdir_NNN/snap_NNN.K.hdf5`` chunks, a chunked
  ``groups_NNN/fof_subhalo_tab_NNN.K.hdf5`` catalog, ``postprocessing/offsets/offsets_NNN.hdf5``
  and optionally ``postprocessing/StellarAssembly/stars_NNN.hdf5``. Catalog fields that are not
  given are derived from the particles (masses, half-mass radii, velocities, photometrics, SO
  masses), with TNG's conventions: wind-phase cells count as stars in ``*LenType`` but as gas
  in ``*MassType`` and ``SubhaloHalfmassRadType`` (TNG data specifications).
* :func:`write_sublink_trees` writes SubLink merger trees (``postprocessing/trees/SubLink/
  tree_extended.K.hdf5``, depth-first, main progenitor = highest mass history) and their
  ``Subhalo/SubLink/*`` offsets, for given descendant links, so that
  ``illustris_python.sublink.loadTree`` reads them as on TNG.
* :func:`generate_demo_universe` draws a small universe of disk galaxies with an accreted
  (ex-situ) stellar halo, at several snapshots linked through particle IDs, and writes it with
  the low-level writer. The physics is a toy chosen so that the ex-situ mass map is learnable
  from the other maps: ex-situ stars are older, metal-poorer, more extended and
  dispersion-dominated, and their fraction rises with stellar mass. Its merger trees come from
  the generator's own bookkeeping (which galaxy and piece each subhalo is), not from particle
  IDs, so they are an independent reference for particle-ID linking.

Toy stellar photometrics: ``log10(M/L_band) = c0 + c_age log10(age/Gyr) + c_Z log10(Z/0.0127)``
per band U, B, V, K, g, r, i, z (coefficients below, roughly BC03-like slopes, NOT BC03), and
``mag = Msun_band - 2.5 log10(M_init / (M/L))``. Wind cells get +99 mag (they emit nothing here).
"""

from __future__ import annotations

import copy
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from simbridge.errors import SimBridgeConfigError
from simbridge.sims.tng import fof_offsets
from simbridge.units import cosmic_time_gyr, msun_to_code_mass, periodic_offset

# ----------------------------------------------------------------------------------------------
# Constants of the TNG layout
# ----------------------------------------------------------------------------------------------

UNIT_LENGTH_IN_CM = 3.085678e21
UNIT_MASS_IN_G = 1.989e43
UNIT_VELOCITY_IN_CM_PER_S = 1.0e5
#: Gravitational constant in kpc (km/s)^2 / Msun.
G_KPC_KMS2_PER_MSUN = 4.30091e-6
#: Critical density today, 3 H0^2 / (8 pi G), in (1e10 Msun/h) / (kpc/h)^3 (independent of h).
RHO_CRIT0_CODE = 2.77536627e-8
#: 1 km/s for 1 Gyr, in kpc.
KPC_PER_KMS_GYR = 1.0227121650537077
#: Magnitude written for objects without starlight (wind cells, star-less subhalos).
NO_LIGHT_MAGNITUDE = 99.0
#: Solar metallicity used by the TNG documentation.
Z_SUN = 0.0127

REQUIRED_HEADER_KEYS = (
    "Time", "Redshift", "BoxSize", "HubbleParam", "Omega0", "OmegaLambda", "OmegaBaryon",
    "MassTable",
)
_WRITER_OWNED_HEADER_KEYS = (
    "NumPart_ThisFile", "NumPart_Total", "NumPart_Total_HighWord", "NumFilesPerSnapshot",
)
_GIT_COMMIT = b"simbridge-synthetic-tng-demo"
_GIT_DATE = b"synthetic"

f4, f8, i4, u8 = np.float32, np.float64, np.int32, np.uint64

#: On-disk dtypes of particle fields (TNG100-1, measured; see data-formats.md 1.4).
PARTICLE_FIELD_DTYPES: dict[str, type] = {
    "Coordinates": f8, "Velocities": f4, "Masses": f4, "ParticleIDs": u8,
    "GFM_InitialMass": f4, "GFM_Metallicity": f4, "GFM_StellarFormationTime": f4,
    "GFM_StellarPhotometrics": f4, "GFM_Metals": f4, "Potential": f4, "Density": f4,
    "InternalEnergy": f4, "StarFormationRate": f4, "ElectronAbundance": f4,
    "NeutralHydrogenAbundance": f4, "SubfindHsml": f4,
}
#: On-disk dtypes of Subhalo catalog fields.
SUBHALO_FIELD_DTYPES: dict[str, type] = {
    "SubhaloCM": f4, "SubhaloFlag": np.uint8, "SubhaloGrNr": i4, "SubhaloHalfmassRad": f4,
    "SubhaloHalfmassRadType": f4, "SubhaloIDMostbound": u8, "SubhaloLen": i4,
    "SubhaloLenType": i4, "SubhaloMass": f4, "SubhaloMassType": f4, "SubhaloParent": i4,
    "SubhaloPos": f4, "SubhaloSFR": f4, "SubhaloStellarPhotometrics": f4, "SubhaloVel": f4,
    "SubhaloWindMass": f4,
}
#: On-disk dtypes of Group catalog fields.
GROUP_FIELD_DTYPES: dict[str, type] = {
    "GroupFirstSub": i4, "GroupLen": i4, "GroupLenType": i4, "GroupMass": f4,
    "GroupMassType": f4, "GroupNsubs": i4, "GroupPos": f4, "GroupSFR": f4,
    "Group_M_Crit200": f4, "Group_R_Crit200": f4,
}
#: Unit attributes of TNG snapshot datasets: (a_scaling, h_scaling, length_scaling,
#: mass_scaling, velocity_scaling, to_cgs); physical cgs = value * a^a_s * h^h_s * to_cgs.
_UNIT_ATTRS: dict[str, tuple[float, float, float, float, float, float]] = {
    "Coordinates": (1.0, -1.0, 1.0, 0.0, 0.0, UNIT_LENGTH_IN_CM),
    "Velocities": (0.5, 0.0, 0.0, 0.0, 1.0, UNIT_VELOCITY_IN_CM_PER_S),
    "Masses": (0.0, -1.0, 0.0, 1.0, 0.0, UNIT_MASS_IN_G),
    "GFM_InitialMass": (0.0, -1.0, 0.0, 1.0, 0.0, UNIT_MASS_IN_G),
    "Density": (-3.0, 2.0, -3.0, 1.0, 0.0, UNIT_MASS_IN_G / UNIT_LENGTH_IN_CM**3),
    "InternalEnergy": (0.0, 0.0, 0.0, 0.0, 2.0, UNIT_VELOCITY_IN_CM_PER_S**2),
    "StarFormationRate": (0.0, 0.0, 0.0, 0.0, 0.0, 1.989e33 / 3.15576e7),
}
_DIMENSIONLESS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

#: TNG full snapshots (snapshot, scale factor) from the data specifications; used to give
#: StellarAssembly a plausible SnapNumAtFormation. Snap 0 is z=20, snap 1 z~15.
_TNG_SNAP_SCALE_FACTORS = np.array([
    (0, 0.0476), (1, 0.0625), (2, 0.0769), (3, 0.0833), (4, 0.0909), (6, 0.1), (8, 0.1111),
    (11, 0.125), (13, 0.1429), (17, 0.1667), (21, 0.2), (25, 0.25), (33, 0.3333), (40, 0.4),
    (50, 0.5), (59, 0.5882), (67, 0.6667), (72, 0.7143), (78, 0.7692), (84, 0.8333),
    (91, 0.9091), (99, 1.0),
])

# Toy mass-to-light model per band (U, B, V, K, g, r, i, z); see the module docstring. Tuned
# so that single populations go from g-r 0.2, B-V 0.25, V-K 1.5 at 0.3 Gyr to 0.75, 0.95, 3.0
# at 10 Gyr, with M/L_V ~ 3.5 at 10 Gyr; solar absolute magnitudes are Vega (UBVK), AB (griz).
BAND_NAMES = ("U", "B", "V", "K", "g", "r", "i", "z")
_SOLAR_ABS_MAG = np.array([5.61, 5.44, 4.81, 3.27, 5.11, 4.65, 4.53, 4.50])
_ML_ZERO = np.array([-0.39, -0.31, -0.25, -0.44, -0.25, -0.22, -0.253, -0.295])
_ML_AGE = np.array([1.19, 0.98, 0.80, 0.405, 0.90, 0.75, 0.671, 0.605])
_ML_METAL = np.array([0.35, 0.30, 0.25, 0.02, 0.30, 0.20, 0.15, 0.10])


# ----------------------------------------------------------------------------------------------
# Low-level writer
# ----------------------------------------------------------------------------------------------


def write_tng_snapshot(
    output_dir: Path,
    snap: int,
    header: dict,
    groups: dict,
    subhalos: dict,
    particles: dict[int, dict[str, np.ndarray]],
    insitu: np.ndarray | None,
    n_snapshot_chunks: int = 3,
    n_catalog_chunks: int = 2,
) -> tuple[dict[str, NDArray], dict[str, NDArray]]:
    """Write one snapshot, its group catalog, offsets and (optionally) StellarAssembly file.

    ``output_dir`` is ``<sim>/output`` (illustris_python's basePath). Inputs are in code units
    and in FoF order. ``header`` holds Time, Redshift, BoxSize, HubbleParam, Omega0,
    OmegaLambda, OmegaBaryon and MassTable (DM mass in MassTable[1]; no PartType1/Masses).
    ``groups`` needs GroupLenType and GroupNsubs (or ``subhalos['SubhaloGrNr']``),
    ``subhalos`` needs SubhaloLenType; missing catalog fields are derived from the particles.
    ``insitu`` is the StellarAssembly InSitu flag per PartType4 element (1, 0, or -1 for wind
    and elements outside subhalos), or None to write no StellarAssembly file.
    Returns the (groups, subhalos) catalog as written, derived fields included.
    Raises ValueError on inconsistent inputs.
    """
    output_dir = Path(output_dir)
    if int(n_snapshot_chunks) < 1 or int(n_catalog_chunks) < 1:
        raise ValueError(
            f"n_snapshot_chunks and n_catalog_chunks must be >= 1, got "
            f"{n_snapshot_chunks} and {n_catalog_chunks}"
        )
    hdr = _check_header(header)
    parts = _check_particles(particles, hdr)
    grp, sub = _check_catalog(groups, subhalos, parts)
    group_off, sub_off = fof_offsets(grp["GroupLenType"], grp["GroupNsubs"],
                                     sub["SubhaloLenType"])
    ins = _check_insitu(insitu, parts, sub_off, sub["SubhaloLenType"])
    grp, sub = _complete_catalog(hdr, grp, sub, parts, group_off, sub_off)

    snap_starts = _write_snapshot_chunks(output_dir, snap, hdr, parts, int(n_snapshot_chunks))
    group_starts, sub_starts = _write_group_catalog(output_dir, snap, hdr, grp, sub,
                                                    int(n_catalog_chunks))
    post = output_dir.parent / "postprocessing"
    offsets_file = post / "offsets" / f"offsets_{snap:03d}.hdf5"
    offsets_file.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(offsets_file, "w") as fh:
        _dataset(fh, "FileOffsets/Group", group_starts.astype(np.int64))
        _dataset(fh, "FileOffsets/Subhalo", sub_starts.astype(np.int64))
        _dataset(fh, "FileOffsets/SnapByType", snap_starts.astype(np.int64))  # (nChunks, 6)
        _dataset(fh, "Group/SnapByType", group_off.astype(np.int64))
        _dataset(fh, "Subhalo/SnapByType", sub_off.astype(np.int64))
    if ins is not None:
        _write_stellar_assembly(post / "StellarAssembly" / f"stars_{snap:03d}.hdf5", parts.get(4),
                                ins, sub_off, sub["SubhaloLenType"])
    return grp, sub


def _dataset(parent: h5py.Group, name: str, data: NDArray) -> h5py.Dataset:
    """Create a dataset without timestamps, so that equal inputs give byte-identical files."""
    return parent.create_dataset(name, data=data, track_times=False)


def _check_header(header: dict) -> dict[str, Any]:
    missing = [k for k in REQUIRED_HEADER_KEYS if k not in header]
    if missing:
        raise ValueError(f"header lacks {missing}; required: {list(REQUIRED_HEADER_KEYS)}")
    owned = [k for k in _WRITER_OWNED_HEADER_KEYS if k in header]
    if owned:
        raise ValueError(f"header must not set {owned}: the writer computes them")
    hdr = dict(header)
    hdr["MassTable"] = np.asarray(header["MassTable"], dtype=f8)
    if hdr["MassTable"].shape != (6,):
        raise ValueError(f"MassTable must have 6 entries, got shape {hdr['MassTable'].shape}")
    for key in REQUIRED_HEADER_KEYS[:-1]:
        hdr[key] = float(header[key])
    if not hdr["BoxSize"] > 0 or not 0 < hdr["Time"] <= 1.0 + 1e-12:
        raise ValueError(f"need BoxSize > 0 and 0 < Time <= 1, got {hdr['BoxSize']}, "
                         f"{hdr['Time']}")
    return hdr


def _check_particles(particles: dict, hdr: dict) -> dict[int, dict[str, NDArray]]:
    """Cast particle fields to TNG dtypes and check shapes, masses, wrapping and unique IDs."""
    parts: dict[int, dict[str, NDArray]] = {}
    box = hdr["BoxSize"]
    for ptype, fields in sorted(particles.items()):
        if int(ptype) not in range(6):
            raise ValueError(f"particle type must be 0..5, got {ptype!r}")
        t = int(ptype)
        cast = {name: np.asarray(arr, dtype=PARTICLE_FIELD_DTYPES.get(name))
                for name, arr in fields.items()}
        lengths = {name: (a.shape[0] if a.ndim else -1) for name, a in cast.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"PartType{t} fields have different lengths: {lengths}")
        n = next(iter(lengths.values()), 0)
        if n == 0:
            continue
        for name in ("Coordinates", "Velocities", "ParticleIDs"):
            if name not in cast:
                raise ValueError(f"PartType{t} lacks {name}")
        for name in ("Coordinates", "Velocities"):
            if cast[name].shape != (n, 3):
                raise ValueError(f"PartType{t}/{name} must have shape (N, 3), got "
                                 f"{cast[name].shape}")
        if hdr["MassTable"][t] > 0 and "Masses" in cast:
            raise ValueError(
                f"PartType{t}/Masses given but MassTable[{t}] > 0: TNG stores that mass only "
                f"in the header; drop the Masses field"
            )
        if hdr["MassTable"][t] == 0 and "Masses" not in cast:
            raise ValueError(f"PartType{t} needs Masses (MassTable[{t}] is 0)")
        coords = cast["Coordinates"]
        if not np.all(np.isfinite(coords)) or coords.min() < 0 or coords.max() >= box:
            raise ValueError(
                f"PartType{t}/Coordinates must be finite and wrapped into [0, BoxSize={box})"
            )
        parts[t] = cast
    all_ids = [p["ParticleIDs"] for p in parts.values()]
    if all_ids:
        ids = np.sort(np.concatenate(all_ids))  # sorting beats np.unique's hashing here
        if (ids[1:] == ids[:-1]).any():
            raise ValueError("ParticleIDs are not unique across particle types")
    return parts


def _check_catalog(
    groups: dict, subhalos: dict, parts: dict[int, dict[str, NDArray]]
) -> tuple[dict[str, NDArray], dict[str, NDArray]]:
    """Check that group and subhalo lengths fit the particles in FoF order."""
    if "GroupLenType" not in groups or "SubhaloLenType" not in subhalos:
        raise ValueError("groups need GroupLenType and subhalos need SubhaloLenType")
    grp = {k: np.asarray(v, dtype=GROUP_FIELD_DTYPES.get(k)) for k, v in groups.items()}
    sub = {k: np.asarray(v, dtype=SUBHALO_FIELD_DTYPES.get(k)) for k, v in subhalos.items()}
    glt = np.asarray(grp["GroupLenType"], dtype=np.int64)
    slt = np.asarray(sub["SubhaloLenType"], dtype=np.int64)
    if glt.ndim != 2 or glt.shape[1] != 6 or slt.ndim != 2 or slt.shape[1] != 6:
        raise ValueError(f"GroupLenType and SubhaloLenType must be (N, 6), got {glt.shape} "
                         f"and {slt.shape}")
    if (glt < 0).any() or (slt < 0).any():
        raise ValueError("GroupLenType and SubhaloLenType must be >= 0")
    ng, ns = len(glt), len(slt)
    if "GroupNsubs" in grp:
        nsubs = np.asarray(grp["GroupNsubs"], dtype=np.int64)
    elif "SubhaloGrNr" in sub:
        nsubs = np.bincount(np.asarray(sub["SubhaloGrNr"], dtype=np.int64), minlength=ng)
    elif ns == 0:
        nsubs = np.zeros(ng, dtype=np.int64)
    else:
        raise ValueError("give groups['GroupNsubs'] or subhalos['SubhaloGrNr']")
    if nsubs.shape != (ng,) or (nsubs < 0).any() or nsubs.sum() != ns:
        raise ValueError(f"GroupNsubs must be {ng} counts >= 0 summing to the {ns} subhalos, "
                         f"got sum {nsubs.sum()}")
    grnr = np.repeat(np.arange(ng), nsubs)
    if "SubhaloGrNr" in sub and not np.array_equal(sub["SubhaloGrNr"], grnr):
        raise ValueError("SubhaloGrNr disagrees with GroupNsubs: subhalos must be in FoF order "
                         "(all subhalos of group 0, then of group 1, ...)")
    first = np.where(nsubs > 0, np.concatenate([[0], np.cumsum(nsubs)[:-1]]), -1)
    if "GroupFirstSub" in grp and not np.array_equal(grp["GroupFirstSub"], first):
        raise ValueError("GroupFirstSub disagrees with GroupNsubs (FoF order expected)")
    grp["GroupNsubs"], grp["GroupFirstSub"] = nsubs.astype(i4), first.astype(i4)
    sub["SubhaloGrNr"] = grnr.astype(i4)
    for name, arrays, n in (("groups", grp, ng), ("subhalos", sub, ns)):
        bad = {k: a.shape for k, a in arrays.items() if a.ndim == 0 or a.shape[0] != n}
        if bad:
            raise ValueError(f"{name} fields must have {n} rows, got {bad}")
    sub_sum = np.zeros((ng, 6), dtype=np.int64)
    np.add.at(sub_sum, grnr, slt)
    over = np.flatnonzero((sub_sum > glt).any(axis=1))
    if over.size:
        raise ValueError(f"the subhalos of groups {over[:5].tolist()} hold more particles "
                         f"than GroupLenType")
    n_type = np.array([len(parts[t]["ParticleIDs"]) if t in parts else 0 for t in range(6)])
    if (glt.sum(axis=0) > n_type).any():
        raise ValueError(f"GroupLenType sums to {glt.sum(axis=0).tolist()} particles per type, "
                         f"more than given: {n_type.tolist()}")
    return grp, sub


def _check_insitu(
    insitu: NDArray | None, parts: dict, sub_off: NDArray, sub_len: NDArray
) -> NDArray | None:
    """InSitu must be -1 for wind and outside subhalos, 0/1 for stars inside subhalos."""
    if insitu is None:
        return None
    n4 = len(parts[4]["ParticleIDs"]) if 4 in parts else 0
    flags = np.asarray(insitu)
    if flags.shape != (n4,):
        raise ValueError(f"insitu needs one entry per PartType4 element ({n4}), got "
                         f"shape {flags.shape}")
    if not np.isin(flags, (-1, 0, 1)).all():
        raise ValueError("insitu values must be 1 (in situ), 0 (ex situ) or -1")
    in_sub = _member_mask(n4, sub_off[:, 4], np.asarray(sub_len)[:, 4])
    wind = _wind_mask(parts.get(4, {}), n4)
    if (flags[~in_sub] != -1).any():
        raise ValueError("insitu must be -1 for PartType4 elements outside every subhalo")
    if (flags[wind] != -1).any():
        raise ValueError("insitu must be -1 for wind cells (GFM_StellarFormationTime <= 0)")
    if (flags[in_sub & ~wind] == -1).any():
        raise ValueError("stars inside a subhalo need insitu 0 or 1")
    return flags.astype(np.int8)


def _member_mask(n: int, offsets: NDArray, lengths: NDArray) -> NDArray:
    """Boolean mask of the elements covered by the ranges [offset, offset + length)."""
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, np.asarray(offsets, dtype=np.int64), 1)
    np.add.at(delta, np.asarray(offsets, dtype=np.int64) + np.asarray(lengths), -1)
    return np.cumsum(delta[:-1]) > 0


def _owner_index(n: int, offsets: NDArray, lengths: NDArray) -> NDArray:
    """Index of the range that holds each element, -1 outside all ranges (int32)."""
    owner = np.full(n, -1, dtype=np.int32)
    lengths = np.asarray(lengths, dtype=np.int64)
    idx = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    pos = np.repeat(np.asarray(offsets, dtype=np.int64), lengths)
    pos += np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    owner[pos] = idx
    return owner


def _wind_mask(stars: dict[str, NDArray], n: int) -> NDArray:
    """Wind-phase cells are PartType4 elements with GFM_StellarFormationTime <= 0."""
    if "GFM_StellarFormationTime" not in stars:
        return np.zeros(n, dtype=bool)
    return stars["GFM_StellarFormationTime"] <= 0


def _half_mass_radius(r: NDArray, m: NDArray) -> float:
    """Radius of the particle at which the cumulative mass, sorted by radius, reaches half."""
    if r.size == 0:
        return 0.0
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(m[order])
    return float(r[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _members(
    parts: dict, mass_table: NDArray, offsets: NDArray, lengths: NDArray
) -> dict[int, dict[str, NDArray]]:
    """Members of one object by catalog mass type: wind cells join type 0, as in TNG."""
    out: dict[int, dict[str, list]] = {}

    def add(t: int, **arrays: NDArray) -> None:
        slot = out.setdefault(t, {})
        for k, v in arrays.items():
            slot.setdefault(k, []).append(v)

    for t in range(6):
        n = int(lengths[t])
        if n == 0:
            continue
        sl = slice(int(offsets[t]), int(offsets[t]) + n)
        f = parts[t]
        pos, vel, ids = f["Coordinates"][sl], f["Velocities"][sl].astype(f8), f["ParticleIDs"][sl]
        m = (f["Masses"][sl].astype(f8) if "Masses" in f
             else np.full(n, mass_table[t], dtype=f8))
        sfr = f["StarFormationRate"][sl].astype(f8) if "StarFormationRate" in f else np.zeros(n)
        if t == 4 and "GFM_StellarFormationTime" in f:
            wind = f["GFM_StellarFormationTime"][sl] <= 0
        else:
            wind = np.zeros(n, dtype=bool)
        keep = ~wind
        extra = {}
        if t == 4 and "GFM_StellarPhotometrics" in f:
            extra["phot"] = f["GFM_StellarPhotometrics"][sl][keep].astype(f8)
        add(t, pos=pos[keep], vel=vel[keep], m=m[keep], ids=ids[keep], sfr=sfr[keep],
            wind=wind[keep], **extra)
        if wind.any():
            add(0, pos=pos[wind], vel=vel[wind], m=m[wind], ids=ids[wind],
                sfr=np.zeros(int(wind.sum())), wind=wind[wind])
    return {t: {k: np.concatenate(v) for k, v in d.items()} for t, d in out.items()}


def _stack_all(members: dict[int, dict[str, NDArray]], key: str) -> NDArray:
    arrays = [members[t][key] for t in sorted(members)]
    return np.concatenate(arrays) if arrays else np.zeros((0, 3) if key in ("pos", "vel") else 0)


def _mass_weighted_centre(pos: NDArray, m: NDArray, box: float) -> NDArray:
    """Periodic mass-weighted centre, taking minimum images about the first particle."""
    d = periodic_offset(pos, pos[0], box)
    return np.mod(pos[0] + (m[:, None] * d).sum(axis=0) / m.sum(), box)


def _complete_catalog(
    hdr: dict, grp: dict, sub: dict, parts: dict, group_off: NDArray, sub_off: NDArray
) -> tuple[dict[str, NDArray], dict[str, NDArray]]:
    """Derive the catalog fields not given, from the member particles (given ones win)."""
    box, a, mass_table = hdr["BoxSize"], hdr["Time"], hdr["MassTable"]
    slt = np.asarray(sub["SubhaloLenType"], dtype=np.int64)
    glt = np.asarray(grp["GroupLenType"], dtype=np.int64)
    ns, ng = len(slt), len(glt)
    d_sub: dict[str, NDArray] = {
        "SubhaloPos": np.zeros((ns, 3)), "SubhaloCM": np.zeros((ns, 3)),
        "SubhaloVel": np.zeros((ns, 3)), "SubhaloMassType": np.zeros((ns, 6)),
        "SubhaloHalfmassRadType": np.zeros((ns, 6)), "SubhaloMass": np.zeros(ns),
        "SubhaloHalfmassRad": np.zeros(ns), "SubhaloLen": slt.sum(axis=1),
        "SubhaloIDMostbound": np.zeros(ns, dtype=u8), "SubhaloSFR": np.zeros(ns),
        "SubhaloWindMass": np.zeros(ns), "SubhaloFlag": np.ones(ns, dtype=np.uint8),
        "SubhaloParent": np.zeros(ns, dtype=i4),
        "SubhaloStellarPhotometrics": np.full((ns, 8), NO_LIGHT_MAGNITUDE),
    }
    for s in range(ns):
        mem = _members(parts, mass_table, sub_off[s], slt[s])
        pos_all, m_all = _stack_all(mem, "pos"), _stack_all(mem, "m")
        if m_all.size == 0:
            raise ValueError(f"subhalo {s} has no particles (SubhaloLenType is all zero)")
        if "SubhaloPos" in sub:  # radii are measured from the stored (float32) centre
            centre = np.asarray(sub["SubhaloPos"][s], dtype=f4).astype(f8)
        else:
            centre = _mass_weighted_centre(pos_all, m_all, box)
        d_sub["SubhaloPos"][s] = centre
        for t, mt in mem.items():
            r = np.linalg.norm(periodic_offset(mt["pos"], centre, box), axis=1)
            d_sub["SubhaloMassType"][s, t] = mt["m"].sum()
            d_sub["SubhaloHalfmassRadType"][s, t] = _half_mass_radius(r, mt["m"])
        d_all = periodic_offset(pos_all, centre, box)
        r_all = np.linalg.norm(d_all, axis=1)
        d_sub["SubhaloMass"][s] = m_all.sum()
        d_sub["SubhaloHalfmassRad"][s] = _half_mass_radius(r_all, m_all)
        d_sub["SubhaloCM"][s] = np.mod(centre + (m_all[:, None] * d_all).sum(0) / m_all.sum(),
                                       box)
        # SubhaloVel is physical peculiar km/s: file velocities times sqrt(a)
        d_sub["SubhaloVel"][s] = ((m_all[:, None] * _stack_all(mem, "vel")).sum(0)
                                  / m_all.sum() * math.sqrt(a))
        d_sub["SubhaloIDMostbound"][s] = _stack_all(mem, "ids")[np.argmin(r_all)]
        d_sub["SubhaloSFR"][s] = _stack_all(mem, "sfr").sum()
        if 0 in mem:
            d_sub["SubhaloWindMass"][s] = mem[0]["m"][mem[0]["wind"]].sum()
        if 4 in mem and "phot" in mem[4] and mem[4]["phot"].size:
            lum = np.power(10.0, -0.4 * mem[4]["phot"]).sum(axis=0)
            d_sub["SubhaloStellarPhotometrics"][s] = -2.5 * np.log10(lum)

    nsubs = np.asarray(grp["GroupNsubs"], dtype=np.int64)
    first = np.asarray(grp["GroupFirstSub"], dtype=np.int64)
    sub_pos = np.asarray(sub.get("SubhaloPos", d_sub["SubhaloPos"]), dtype=f4).astype(f8)
    d_grp: dict[str, NDArray] = {
        "GroupLen": glt.sum(axis=1), "GroupMassType": np.zeros((ng, 6)),
        "GroupMass": np.zeros(ng), "GroupPos": np.zeros((ng, 3)), "GroupSFR": np.zeros(ng),
        "Group_M_Crit200": np.zeros(ng), "Group_R_Crit200": np.zeros(ng),
    }
    rho_200 = 200.0 * RHO_CRIT0_CODE * (hdr["Omega0"] / a**3 + hdr["OmegaLambda"])
    for g in range(ng):
        mem = _members(parts, mass_table, group_off[g], glt[g])
        pos_all, m_all = _stack_all(mem, "pos"), _stack_all(mem, "m")
        for t, mt in mem.items():
            d_grp["GroupMassType"][g, t] = mt["m"].sum()
        d_grp["GroupMass"][g] = m_all.sum()
        d_grp["GroupSFR"][g] = _stack_all(mem, "sfr").sum()
        if "GroupPos" in grp:
            centre = np.asarray(grp["GroupPos"][g], dtype=f4).astype(f8)
        elif nsubs[g] > 0:
            centre = sub_pos[first[g]]
        elif m_all.size:
            centre = _mass_weighted_centre(pos_all, m_all, box)
        else:
            centre = np.zeros(3)
        d_grp["GroupPos"][g] = centre
        if m_all.size:
            # spherical overdensity: outermost particle radius enclosing 200 rho_crit(a)
            r_phys = np.linalg.norm(periodic_offset(pos_all, centre, box), axis=1) * a
            order = np.argsort(r_phys, kind="stable")
            cum = np.cumsum(m_all[order])
            mean_rho = cum / (4.0 / 3.0 * np.pi * np.maximum(r_phys[order], 1e-12) ** 3)
            inside = np.flatnonzero(mean_rho >= rho_200)
            if inside.size:
                m200 = cum[inside[-1]]
                d_grp["Group_M_Crit200"][g] = m200
                d_grp["Group_R_Crit200"][g] = (3.0 * m200 / (4.0 * np.pi * rho_200)) ** (1 / 3) / a

    sub_out = {k: np.asarray(v, dtype=SUBHALO_FIELD_DTYPES.get(k)) for k, v in d_sub.items()}
    sub_out.update(sub)
    grp_out = {k: np.asarray(v, dtype=GROUP_FIELD_DTYPES.get(k)) for k, v in d_grp.items()}
    grp_out.update(grp)
    return grp_out, sub_out


def _chunk_starts(n: int, n_chunks: int, salt: int) -> NDArray:
    """First index of each of ``n_chunks`` contiguous pieces of ``n`` items, unequal in size."""
    k = np.arange(n_chunks)
    weights = 1.0 + 0.8 * ((0.6180339887 * (k + 1) + 0.37 * salt) % 1.0)
    frac = np.concatenate([[0.0], np.cumsum(weights)[:-1] / weights.sum()])
    return np.floor(frac * n).astype(np.int64)


def _write_snapshot_chunks(
    output_dir: Path, snap: int, hdr: dict, parts: dict, n_chunks: int
) -> NDArray:
    """Write snap_NNN.K.hdf5; returns the (n_chunks, 6) first global index per chunk and type."""
    num_total = np.array([len(parts[t]["ParticleIDs"]) if t in parts else 0 for t in range(6)],
                         dtype=np.int64)
    starts = np.stack([_chunk_starts(int(num_total[t]), n_chunks, t) for t in range(6)], axis=1)
    ends = np.vstack([starts[1:], num_total[None, :]])
    snapdir = output_dir / f"snapdir_{snap:03d}"
    snapdir.mkdir(parents=True, exist_ok=True)
    for k in range(n_chunks):
        this = (ends[k] - starts[k]).astype(i4)
        with h5py.File(snapdir / f"snap_{snap:03d}.{k}.hdf5", "w") as fh:
            h = fh.create_group("Header")
            attrs: dict[str, Any] = {
                "BoxSize": hdr["BoxSize"], "Composition_vector_length": i4(0),
                "Flag_Cooling": i4(1), "Flag_DoublePrecision": i4(0), "Flag_Feedback": i4(1),
                "Flag_Metals": i4(10), "Flag_Sfr": i4(1), "Flag_StellarAge": i4(1),
                "Git_commit": np.bytes_(_GIT_COMMIT), "Git_date": np.bytes_(_GIT_DATE),
                "HubbleParam": hdr["HubbleParam"], "MassTable": hdr["MassTable"],
                "NumFilesPerSnapshot": i4(n_chunks), "NumPart_ThisFile": this,
                "NumPart_Total": (num_total & 0xFFFFFFFF).astype(np.uint32),
                "NumPart_Total_HighWord": (num_total >> 32).astype(np.uint32),
                "Omega0": hdr["Omega0"], "OmegaBaryon": hdr["OmegaBaryon"],
                "OmegaLambda": hdr["OmegaLambda"], "Redshift": hdr["Redshift"],
                "Time": hdr["Time"], "UnitLength_in_cm": UNIT_LENGTH_IN_CM,
                "UnitMass_in_g": UNIT_MASS_IN_G,
                "UnitVelocity_in_cm_per_s": UNIT_VELOCITY_IN_CM_PER_S,
            }
            for key in sorted(attrs):
                h.attrs[key] = attrs[key]
            for t in sorted(parts):
                if this[t] == 0:
                    continue  # AREPO writes no PartTypeN group for a type absent from a chunk
                g = fh.create_group(f"PartType{t}")
                for name in sorted(parts[t]):
                    ds = _dataset(g, name, parts[t][name][starts[k, t]:ends[k, t]])
                    scal = _UNIT_ATTRS.get(name, _DIMENSIONLESS)
                    for attr, val in zip(("a_scaling", "h_scaling", "length_scaling",
                                          "mass_scaling", "velocity_scaling", "to_cgs"),
                                         scal, strict=True):
                        ds.attrs[attr] = f8(val)
    return starts


def _write_group_catalog(
    output_dir: Path, snap: int, hdr: dict, grp: dict, sub: dict, n_chunks: int
) -> tuple[NDArray, NDArray]:
    """Write fof_subhalo_tab_NNN.K.hdf5; groups and subhalos are split at different places."""
    ng, ns = len(grp["GroupLenType"]), len(sub["SubhaloLenType"])
    gstarts, sstarts = _chunk_starts(ng, n_chunks, 7), _chunk_starts(ns, n_chunks, 3)
    gends, sends = np.append(gstarts[1:], ng), np.append(sstarts[1:], ns)
    group_len = np.asarray(grp["GroupLen"], dtype=np.int64)
    gcdir = output_dir / f"groups_{snap:03d}"
    gcdir.mkdir(parents=True, exist_ok=True)
    for k in range(n_chunks):
        with h5py.File(gcdir / f"fof_subhalo_tab_{snap:03d}.{k}.hdf5", "w") as fh:
            h = fh.create_group("Header")
            attrs: dict[str, Any] = {
                "BoxSize": hdr["BoxSize"], "FlagDoubleprecision": i4(0),
                "Git_commit": np.bytes_(_GIT_COMMIT), "Git_date": np.bytes_(_GIT_DATE),
                "HubbleParam": hdr["HubbleParam"], "Ngroups_ThisFile": i4(gends[k] - gstarts[k]),
                "Ngroups_Total": i4(ng),
                "Nids_ThisFile": i4(group_len[gstarts[k]:gends[k]].sum()),
                "Nids_Total": i4(group_len.sum()),
                "Nsubgroups_ThisFile": i4(sends[k] - sstarts[k]), "Nsubgroups_Total": i4(ns),
                "NumFiles": i4(n_chunks), "Omega0": hdr["Omega0"],
                "OmegaBaryon": hdr["OmegaBaryon"], "OmegaLambda": hdr["OmegaLambda"],
                "Redshift": hdr["Redshift"], "Time": hdr["Time"],
            }
            for key in sorted(attrs):
                h.attrs[key] = attrs[key]
            # empty chunks keep empty Group/Subhalo groups, which illustris_python expects
            for gname, table, lo, hi in (("Group", grp, gstarts[k], gends[k]),
                                         ("Subhalo", sub, sstarts[k], sends[k])):
                g = fh.create_group(gname)
                if hi > lo:
                    for name in sorted(table):
                        _dataset(g, name, table[name][lo:hi])
    return gstarts, sstarts


def _snapnum_at_formation(a_form: NDArray) -> NDArray:
    """Last TNG snapshot at or before each formation scale factor (-1 for a <= 0)."""
    snaps, scale = _TNG_SNAP_SCALE_FACTORS[:, 0], _TNG_SNAP_SCALE_FACTORS[:, 1]
    a = np.asarray(a_form, dtype=f8)
    interp = np.interp(np.log(np.clip(a, 1e-3, 1.0)), np.log(scale), snaps)
    return np.where(a > 0, np.floor(interp + 1e-9), -1).astype(np.int16)


def _write_stellar_assembly(
    path: Path, stars: dict | None, insitu: NDArray, sub_off: NDArray, sub_len: NDArray
) -> None:
    """Root-level StellarAssembly datasets, one entry per PartType4 element in snapshot order."""
    stars = stars or {}
    n = len(insitu)
    ids = stars.get("ParticleIDs", np.zeros(0, dtype=u8))
    a_form = stars.get("GFM_StellarFormationTime", np.ones(n, dtype=f4))
    subfind_id = _owner_index(n, sub_off[:, 4], np.asarray(sub_len)[:, 4])
    exsitu = insitu == 0
    columns: dict[str, NDArray] = {
        "ParticleID": ids.astype(u8),
        "SubfindID": subfind_id.astype(i4),
        "InSitu": insitu.astype(np.int8),
        # ex-situ stars were born before infall and arrived in completed mergers; the rest of
        # the merger history is not modelled, so those columns hold the undefined value -1
        "AfterInfall": np.where(exsitu, 0, -1).astype(np.int8),
        "AccretionOrigin": np.where(exsitu, 0, -1).astype(np.int8),
        "MergerMassRatio": np.full(n, -1.0, dtype=f4),
        "SubfindIDAtFormation": np.full(n, -1, dtype=i4),
        "SnapNumAtFormation": _snapnum_at_formation(a_form),
        "DistanceAtFormation": np.full(n, -1.0, dtype=f4),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        for name in sorted(columns):
            _dataset(fh, name, columns[name])


# ----------------------------------------------------------------------------------------------
# SubLink merger trees
# ----------------------------------------------------------------------------------------------

#: Tree files the demo writes; every tree lies whole in one file, as in TNG.
N_SUBLINK_FILES = 2
# ID layout of nelson-group/sublink (SubhaloTrees/TreesClasses.hpp): TreeID = file * 1e16 +
# (tree index in file) * 1e8, SubhaloID = TreeID + row in tree, SubhaloIDRaw = snap * 1e12 + id
_SUBLINK_FILE_STRIDE = 10**16
_SUBLINK_TREE_STRIDE = 10**8
_SUBLINK_RAW_STRIDE = 10**12


@dataclass
class _SubLinkLayout:
    """Depth-first SubLink trees over nodes 0..N-1: links are node indices, -1 for none."""

    rows_per_file: list[NDArray]
    subhalo_id: NDArray
    tree_id: NDArray
    first_progenitor: NDArray
    next_progenitor: NDArray
    last_progenitor: NDArray
    main_leaf_progenitor: NDArray
    root_descendant: NDArray
    first_in_fof: NDArray
    next_in_fof: NDArray
    mass_history: NDArray


def _sublink_layout(
    snap: NDArray, subfind: NDArray, descendant: NDArray, mass: NDArray, group: NDArray,
    n_files: int,
) -> _SubLinkLayout:
    """Arrange nodes into SubLink trees as nelson-group/sublink's build_trees does.

    The main (first) progenitor is the one with the highest MassHistory (own mass plus the
    main progenitor's MassHistory; De Lucia & Blaizot 2007); the other progenitors follow in
    decreasing MassHistory through NextProgenitor, as do the subhalos of a FoF group. A tree
    holds the branches of the subhalos of one FoF group at the last snapshot (in subfind
    order), plus branches that end earlier, joined to the tree of their FoF group's first
    subhalo. Rows are depth-first: each subhalo, then its first progenitor's subtree, then the
    next progenitors' subtrees. Trees go largest first into ``n_files`` files.
    """
    n = len(snap)
    by_time = np.lexsort((subfind, snap))  # snapshot, then subfind index: build_trees' order
    mass_history = np.zeros(n)
    progenitors: list[list[int]] = [[] for _ in range(n)]
    for i in by_time.tolist():
        progs = progenitors[i]
        progs.sort(key=lambda q: -mass_history[q])  # stable: ties keep (snap, subfind) order
        mass_history[i] = mass[i] + (mass_history[progs[0]] if progs else 0.0)
        if descendant[i] >= 0:
            progenitors[int(descendant[i])].append(i)
    first_prog = np.full(n, -1, dtype=np.int64)
    next_prog = np.full(n, -1, dtype=np.int64)
    for i, progs in enumerate(progenitors):
        if progs:
            first_prog[i] = progs[0]
            next_prog[progs[:-1]] = progs[1:]
    first_in_fof = np.full(n, -1, dtype=np.int64)
    next_in_fof = np.full(n, -1, dtype=np.int64)
    members: dict[tuple[int, int], list[int]] = {}
    for i in by_time.tolist():
        members.setdefault((int(snap[i]), int(group[i])), []).append(i)
    for subs in members.values():
        subs.sort(key=lambda q: -mass_history[q])
        first_in_fof[subs] = subs[0]
        next_in_fof[subs[:-1]] = subs[1:]

    tree_of = np.full(n, -1, dtype=np.int64)
    root_desc = np.full(n, -1, dtype=np.int64)
    last_prog = np.full(n, -1, dtype=np.int64)
    main_leaf = np.full(n, -1, dtype=np.int64)
    trees: list[list[int]] = []

    def add_recursive(t: int, i: int) -> None:
        tree_of[i] = t
        trees[t].append(i)
        root_desc[i] = i if descendant[i] < 0 else root_desc[descendant[i]]
        for q in progenitors[i]:
            add_recursive(t, q)
        main_leaf[i] = main_leaf[progenitors[i][0]] if progenitors[i] else i
        last_prog[i] = trees[t][-1]

    # first pass: one tree per FoF group of the last snapshot, in group order
    last = by_time[snap[by_time] == snap.max()].tolist()
    tree_of_group: dict[int, int] = {}
    for g in sorted({int(group[i]) for i in last}):
        tree_of_group[g] = len(trees)
        trees.append([])
    for i in last:
        add_recursive(tree_of_group[int(group[i])], i)
    # second pass: branches that end before the last snapshot join their FoF group's tree
    for i in np.lexsort((subfind, -snap)).tolist():  # latest snapshot first
        f = int(first_in_fof[i])
        if tree_of[f] < 0:
            trees.append([])
            add_recursive(len(trees) - 1, f)
        if tree_of[i] < 0:
            add_recursive(int(tree_of[f]), i)
        elif tree_of[i] != tree_of[f]:
            keep, drop = int(tree_of[f]), int(tree_of[i])
            if len(trees[drop]) > len(trees[keep]):
                keep, drop = drop, keep
            tree_of[trees[drop]] = keep
            trees[keep].extend(trees[drop])
            trees[drop] = []

    trees = sorted((t for t in trees if t), key=len, reverse=True)  # stable: ties keep order
    sizes = np.array([len(t) for t in trees], dtype=np.int64)
    if sizes.size and sizes.max() >= _SUBLINK_TREE_STRIDE:
        raise ValueError("a SubLink tree may hold at most 1e8 subhalos")
    # contiguous runs of trees, about equal in rows, one run per file
    before = np.cumsum(sizes) - sizes
    file_of_tree = np.minimum(before * max(1, n_files) // max(1, n), max(1, n_files) - 1)
    file_of_tree = np.unique(file_of_tree, return_inverse=True)[1]  # no empty file
    subhalo_id = np.full(n, -1, dtype=np.int64)
    tree_id = np.full(n, -1, dtype=np.int64)
    rows_per_file: list[list[int]] = [[] for _ in range(int(file_of_tree.max()) + 1)]
    for k, (nodes, f) in enumerate(zip(trees, file_of_tree.tolist(), strict=True)):
        k_in_file = k - int(np.searchsorted(file_of_tree, f))
        tid = f * _SUBLINK_FILE_STRIDE + k_in_file * _SUBLINK_TREE_STRIDE
        tree_id[nodes] = tid
        subhalo_id[nodes] = tid + np.arange(len(nodes))
        rows_per_file[f].extend(nodes)
    return _SubLinkLayout(
        rows_per_file=[np.array(r, dtype=np.int64) for r in rows_per_file],
        subhalo_id=subhalo_id, tree_id=tree_id, first_progenitor=first_prog,
        next_progenitor=next_prog, last_progenitor=last_prog, main_leaf_progenitor=main_leaf,
        root_descendant=root_desc, first_in_fof=first_in_fof, next_in_fof=next_in_fof,
        mass_history=mass_history,
    )


def write_sublink_trees(
    sim_dir: Path,
    snapnum: ArrayLike,
    subfind_id: ArrayLike,
    descendant: ArrayLike,
    catalogs: dict[int, tuple[dict[str, NDArray], dict[str, NDArray]]],
    n_files: int = N_SUBLINK_FILES,
    tree_name: str = "SubLink",
) -> list[Path]:
    """Write SubLink trees ``postprocessing/trees/<tree_name>/tree_extended.K.hdf5`` and offsets.

    Node i is subhalo ``subfind_id[i]`` of snapshot ``snapnum[i]``; ``descendant[i]`` is the
    node index of its descendant at a later snapshot (a skipped snapshot is allowed), or -1.
    ``catalogs`` maps every written snapshot to its (groups, subhalos) catalog as returned by
    :func:`write_tng_snapshot`. Columns follow TNG's tree_extended files (dtypes of
    nelson-group/sublink): the minimal SubLink fields, every Subhalo field and the Group fields
    of the subhalo's FoF group. As SubLink follows dark matter, Mass is SubhaloMassType[:, 1]
    and NumParticles SubhaloLenType[:, 1]. Each snapshot's offsets file gains
    ``Subhalo/<tree_name>/{RowNum, SubhaloID, LastProgenitorID}`` (int64, -1 for subhalos in
    no tree; RowNum counts rows across all tree files). Returns the tree file paths.
    """
    sim_dir = Path(sim_dir)
    snap = np.asarray(snapnum, dtype=np.int64)
    sub = np.asarray(subfind_id, dtype=np.int64)
    desc = np.asarray(descendant, dtype=np.int64)
    n = len(snap)
    if sub.shape != (n,) or desc.shape != (n,):
        raise ValueError("snapnum, subfind_id and descendant must be 1-D of equal length")
    if n == 0:
        raise ValueError("no subhalos given: a SubLink tree needs at least one")
    missing = sorted(set(snap.tolist()) - set(catalogs))
    if missing:
        raise ValueError(f"no catalog given for snapshots {missing}")
    if len({(int(a), int(b)) for a, b in zip(snap, sub, strict=True)}) != n:
        raise ValueError("a (snapnum, subfind_id) pair appears twice")
    n_sub = {s: len(catalogs[s][1]["SubhaloLenType"]) for s in catalogs}
    if (sub < 0).any() or any(sub[i] >= n_sub[int(snap[i])] for i in range(n)):
        raise ValueError("subfind_id out of range of its snapshot's catalog")
    linked = desc >= 0
    if ((desc < -1) | (desc >= n)).any() or (snap[desc[linked]] <= snap[linked]).any():
        raise ValueError("each descendant must be a node index (or -1) at a later snapshot")

    def from_catalog(kind: int, name: str, index: NDArray, snaps: NDArray) -> NDArray:
        """Catalog field ``name`` (kind 0: Group, 1: Subhalo) at ``index`` of each snapshot."""
        template = np.asarray(catalogs[int(snaps[0])][kind][name])
        out = np.zeros((len(index), *template.shape[1:]), dtype=template.dtype)
        for s in np.unique(snaps).tolist():
            here = snaps == s
            out[here] = np.asarray(catalogs[s][kind][name])[index[here]]
        return out

    offsets_dir = sim_dir / "postprocessing" / "offsets"
    absent = [s for s in sorted(catalogs) if not (offsets_dir / f"offsets_{s:03d}.hdf5").is_file()]
    if absent:
        raise ValueError(f"write the snapshots first: no offsets file for snapshots {absent}")
    grnr = from_catalog(1, "SubhaloGrNr", sub, snap).astype(np.int64)
    mass = from_catalog(1, "SubhaloMassType", sub, snap)[:, 1].astype(f8)
    lay = _sublink_layout(snap, sub, desc, mass, grnr, int(n_files))

    def ids_of(links: NDArray) -> NDArray:
        return np.where(links >= 0, lay.subhalo_id[np.maximum(links, 0)], -1).astype(np.int64)

    tree_dir = sim_dir / "postprocessing" / "trees" / tree_name
    tree_dir.mkdir(parents=True, exist_ok=True)
    paths, row_start, global_row = [], 0, np.full(n, -1, dtype=np.int64)
    sub_fields, grp_fields = sorted(catalogs[int(snap[0])][1]), sorted(catalogs[int(snap[0])][0])
    for k, rows in enumerate(lay.rows_per_file):
        s, i = snap[rows], sub[rows]
        columns: dict[str, NDArray] = {
            "SubhaloID": lay.subhalo_id[rows],
            "SubhaloIDRaw": (s * _SUBLINK_RAW_STRIDE + i).astype(np.int64),
            "LastProgenitorID": ids_of(lay.last_progenitor[rows]),
            "MainLeafProgenitorID": ids_of(lay.main_leaf_progenitor[rows]),
            "RootDescendantID": ids_of(lay.root_descendant[rows]),
            "TreeID": lay.tree_id[rows],
            "SnapNum": s.astype(np.int16),
            "FirstProgenitorID": ids_of(lay.first_progenitor[rows]),
            "NextProgenitorID": ids_of(lay.next_progenitor[rows]),
            "DescendantID": ids_of(desc[rows]),
            "FirstSubhaloInFOFGroupID": ids_of(lay.first_in_fof[rows]),
            "NextSubhaloInFOFGroupID": ids_of(lay.next_in_fof[rows]),
            "NumParticles": from_catalog(1, "SubhaloLenType", i, s)[:, 1].astype(np.uint32),
            "Mass": mass[rows].astype(f4),
            "MassHistory": lay.mass_history[rows].astype(f4),
            "SubfindID": i.astype(i4),
        }
        for name in sub_fields:
            columns.setdefault(name, from_catalog(1, name, i, s))
        for name in grp_fields:
            columns.setdefault(name, from_catalog(0, name, grnr[rows], s))
        path = tree_dir / f"tree_extended.{k}.hdf5"
        with h5py.File(path, "w") as fh:
            for name in sorted(columns):
                _dataset(fh, name, columns[name])
        paths.append(path)
        global_row[rows] = row_start + np.arange(len(rows))
        row_start += len(rows)

    for s in sorted(catalogs):
        here = np.flatnonzero(snap == s)
        entries = {name: np.full(n_sub[s], -1, dtype=np.int64)
                   for name in ("RowNum", "SubhaloID", "LastProgenitorID")}
        entries["RowNum"][sub[here]] = global_row[here]
        entries["SubhaloID"][sub[here]] = lay.subhalo_id[here]
        entries["LastProgenitorID"][sub[here]] = ids_of(lay.last_progenitor[here])
        with h5py.File(offsets_dir / f"offsets_{s:03d}.hdf5", "a") as fh:
            for name in sorted(entries):
                key = f"Subhalo/{tree_name}/{name}"
                if key in fh:
                    del fh[key]
                _dataset(fh, key, entries[name])
    return paths


# ----------------------------------------------------------------------------------------------
# Demo universe
# ----------------------------------------------------------------------------------------------

DEFAULT_DEMO_PARAMS: dict[str, Any] = {
    "n_galaxies": 120,
    "box_size_ckpc_h": 35000.0,
    "hubble_param": 0.6774,
    "omega_matter": 0.3089,
    "omega_lambda": 0.6911,
    "omega_baryon": 0.0486,
    "log10_stellar_mass_range": [9.5, 11.7],
    "star_particle_mass_msun": 5.0e6,
    "snapshots": [{"snapshot": 99, "redshift": 0.0}, {"snapshot": 91, "redshift": 0.1}],
    "n_snapshot_chunks": 3,
    "n_catalog_chunks": 2,
    "wind_fraction": 0.02,
    "edge_fraction": 0.1,
    "merger_trees": True,
    # galaxy-physics variant knobs (generalization branch); the defaults change nothing
    "metallicity_offset_dex": 0.0,   # added to every star's log10 metallicity
    "formation_time_power": 1.0,     # a_form -> a_final (a_form / a_final)^power (< 1: younger)
    # structure variant knobs (realism branch); the defaults change nothing
    "disk_scale_factor": 1.0,        # multiplies every disk scale length (< 1: compact)
    "bulge_fraction_scale": 1.0,     # multiplies the in-situ bulge's share of the stars
    "disk_clump_fraction": 0.0,      # share of disk stars in young star-forming clumps
}

# Fields written per particle type, so that every galaxy contributes the same columns.
_GAS_FIELDS = ("Coordinates", "Velocities", "Masses", "ParticleIDs", "GFM_Metallicity",
               "StarFormationRate", "Density", "InternalEnergy")
_STAR_FIELDS = ("Coordinates", "Velocities", "Masses", "ParticleIDs", "GFM_InitialMass",
                "GFM_Metallicity", "GFM_StellarFormationTime", "GFM_StellarPhotometrics")
_DM_FIELDS = ("Coordinates", "Velocities", "ParticleIDs")


def _variant_formation_times(a_form: NDArray, a_final: float, p: dict) -> NDArray:
    """Formation scale factors (float32) under the ``formation_time_power`` variant knob."""
    power = float(p["formation_time_power"])
    if power != 1.0:  # leave the default bit-for-bit unchanged
        a_form = a_final * (np.asarray(a_form, dtype=f8) / a_final) ** power
    return np.asarray(a_form).astype(f4)


def _mass_norm(log10_mstar: float) -> float:
    """0 at 10^9.5 Msun, 1 at 10^11.7 Msun: the physical scalings of the toy model."""
    return float(np.clip((log10_mstar - 9.5) / 2.2, 0.0, 1.0))


def _stellar_mass_quantile(q: NDArray, lo: float, hi: float) -> NDArray:
    """log10 M* at quantiles q of a peaked, Schechter-like dN/dlog M* on [lo, hi].

    dN/dlog M* rises as M* below 10^10.3 Msun and falls as 1/M* above it: with the default
    range about 19% of galaxies lie below 1e10 Msun and 9% above 1e11, and the few most massive
    galaxies do not dominate the particle count as they would for a log-uniform draw.
    """
    peak = min(max(10.3, lo), hi)
    x = np.linspace(lo, hi, 4097)
    density = np.power(10.0, np.where(x < peak, x - peak, peak - x))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(x))])
    return np.interp(q, cdf / cdf[-1], x)


def _random_rotation(rng: np.random.Generator) -> NDArray:
    """Uniformly random 3D rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _unit_vectors(rng: np.random.Generator, n: int) -> NDArray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _hernquist_radii(rng: np.random.Generator, n: int, scale: float, u_max: float = 0.9) -> NDArray:
    """Radii from a Hernquist profile truncated at enclosed-mass fraction ``u_max``."""
    s = np.sqrt(rng.uniform(0.0, u_max, n))
    return scale * s / (1.0 - s)


def _hernquist_scale_for_half_mass(r_half: float, u_max: float = 0.9) -> float:
    s = math.sqrt(0.5 * u_max)
    return r_half * (1.0 - s) / s


def _nfw_radii(rng: np.random.Generator, n: int, r200: float, conc: float) -> NDArray:
    """Radii from an NFW profile truncated at r200 (inverse CDF on a table)."""
    x = np.linspace(0.0, conc, 2048)
    cdf = np.log1p(x) - x / (1.0 + x)
    return np.interp(rng.uniform(0.0, cdf[-1], n), cdf, x) * (r200 / conc)


def _spherical(rng: np.random.Generator, radii: NDArray) -> NDArray:
    return radii[:, None] * _unit_vectors(rng, len(radii))


def _mass_centre(pos: NDArray, mass: NDArray) -> NDArray:
    w = np.asarray(mass, dtype=f8)
    return (w[:, None] * pos).sum(axis=0) / w.sum() if len(w) else np.zeros(3)


def _centred(pos: NDArray, mass: NDArray) -> NDArray:
    """Shift a freshly drawn particle set so its mass centre is the origin (few-particle noise)."""
    return pos - _mass_centre(pos, mass)


def _disk(rng: np.random.Generator, n: int, r_scale: float, z_scale: float) -> tuple[NDArray, ...]:
    """Exponential disk in its own frame: positions (n,3), cylindrical R and azimuth."""
    big_r = rng.gamma(2.0, r_scale, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    pos = np.column_stack([big_r * np.cos(phi), big_r * np.sin(phi), rng.laplace(0, z_scale, n)])
    return pos, big_r, phi


#: star-forming clumps per disk (knob disk_clump_fraction)
_CLUMPS_PER_DISK = 6


def _add_disk_clumps(rng: np.random.Generator, pos: NDArray, a_form: NDArray, fraction: float,
                     r_scale: float, a_final: float) -> None:
    """Move a share of the disk stars (in place) into a few compact young clumps centred on
    disk positions: the small-scale structure of observed star-forming disks (ages 0.3-1 Gyr,
    Gaussian knots of 0.08 disk scale lengths)."""
    n = len(pos)
    in_clump = rng.random(n) < fraction
    k = int(in_clump.sum())
    centres = pos[rng.choice(n, _CLUMPS_PER_DISK, replace=False)]
    which = rng.integers(0, _CLUMPS_PER_DISK, k)
    pos[in_clump] = centres[which] + rng.normal(0.0, 0.08 * r_scale, (k, 3)) * [1.0, 1.0, 0.3]
    a_form[in_clump] = a_final * rng.uniform(0.93, 0.98, k)


def _cylindrical_velocity(v_r: NDArray, v_phi: NDArray, v_z: NDArray, phi: NDArray) -> NDArray:
    c, s = np.cos(phi), np.sin(phi)
    return np.column_stack([v_r * c - v_phi * s, v_r * s + v_phi * c, v_z])


def _mass_loss_fraction(age_gyr: NDArray) -> NDArray:
    """Toy stellar mass-loss fraction, so GFM_InitialMass sits 3-25% above Masses."""
    return 0.03 + 0.17 * (1.0 - np.exp(-np.asarray(age_gyr) / 2.0))


def _toy_magnitudes(initial_mass_msun: NDArray, age_gyr: NDArray, metallicity: NDArray) -> NDArray:
    """Absolute magnitudes (N, 8) in U, B, V, K, g, r, i, z from the toy M/L model."""
    log_age = np.log10(np.clip(age_gyr, 1e-3, None))[:, None]
    log_z = np.log10(np.clip(metallicity, 1e-5, None) / Z_SUN)[:, None]
    log_ml = _ML_ZERO + _ML_AGE * log_age + _ML_METAL * log_z
    log_l = np.log10(initial_mass_msun)[:, None] - log_ml
    return _SOLAR_ABS_MAG - 2.5 * log_l


@dataclass
class _Cosmology:
    h: float
    omega_m: float
    omega_l: float

    def time_gyr(self, a: NDArray | float) -> NDArray:
        return cosmic_time_gyr(a, self.h, self.omega_m, self.omega_l)

    def rho_crit_msun_kpc3(self, a: float) -> float:
        e2 = self.omega_m / a**3 + self.omega_l
        return RHO_CRIT0_CODE * 1e10 * self.h**2 * e2  # code units -> Msun / kpc^3


@dataclass
class _Galaxy:
    """One galaxy's particles at the final snapshot: physical kpc and km/s about its centre."""

    index: int
    log10_mstar: float
    centre_final: NDArray
    bulk_vel_kms: NDArray
    rotation: NDArray
    disk_scale_kpc: float
    v_flat_kms: float
    r200_kpc: float
    v200_kms: float
    log10_z_insitu: float
    stars: dict[str, NDArray]
    gas: dict[str, NDArray]
    dm: dict[str, NDArray]
    fuzz_dm: dict[str, NDArray]
    a_merger: float
    dm_to_merger: NDArray
    satellite: dict[str, dict[str, NDArray]] | None
    snapshot_rngs: list[np.random.Generator] = field(default_factory=list)
    straddles_edge: bool = False


@dataclass
class _Piece:
    """Particles of one subhalo (or a group's inner fuzz) at one snapshot, in file units."""

    galaxy: int
    kind: str
    centre: NDArray
    parts: dict[int, dict[str, NDArray]]
    insitu: NDArray

    def n(self, t: int) -> int:
        return len(self.parts[t]["ParticleIDs"]) if t in self.parts else 0

    def n_total(self) -> int:
        return sum(self.n(t) for t in range(6))


def _check_demo_params(params: dict) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULT_DEMO_PARAMS))
    if unknown:
        raise SimBridgeConfigError(f"demo_universe: unknown keys {unknown}; allowed: "
                                   f"{sorted(DEFAULT_DEMO_PARAMS)}")
    p = copy.deepcopy(DEFAULT_DEMO_PARAMS)
    p.update(copy.deepcopy(dict(params)))
    lo, hi = (float(x) for x in p["log10_stellar_mass_range"])
    snaps = p["snapshots"]
    problems = []
    if int(p["n_galaxies"]) < 1:
        problems.append("n_galaxies must be >= 1")
    if not lo < hi:
        problems.append("log10_stellar_mass_range must be [low, high] with low < high")
    if not snaps or len({int(s["snapshot"]) for s in snaps}) != len(snaps):
        problems.append("snapshots must be a non-empty list with distinct snapshot numbers")
    elif len({float(s["redshift"]) for s in snaps}) != len(snaps) or min(
            float(s["redshift"]) for s in snaps) < 0:
        problems.append("snapshot redshifts must be distinct and >= 0")
    if not 0.0 <= float(p["wind_fraction"]) < 0.5:
        problems.append("wind_fraction must be in [0, 0.5)")
    if not 0.0 <= float(p["edge_fraction"]) <= 1.0:
        problems.append("edge_fraction must be in [0, 1]")
    if int(p["n_snapshot_chunks"]) < 1 or int(p["n_catalog_chunks"]) < 1:
        problems.append("n_snapshot_chunks and n_catalog_chunks must be >= 1")
    if not math.isclose(float(p["omega_matter"]) + float(p["omega_lambda"]), 1.0, abs_tol=1e-4):
        problems.append("omega_matter + omega_lambda must be 1 (flat cosmology)")
    if float(p["box_size_ckpc_h"]) <= 0 or float(p["star_particle_mass_msun"]) <= 0:
        problems.append("box_size_ckpc_h and star_particle_mass_msun must be > 0")
    if not float(p["formation_time_power"]) > 0:
        problems.append("formation_time_power must be > 0")
    if not float(p["disk_scale_factor"]) > 0:
        problems.append("disk_scale_factor must be > 0")
    if not 0.0 <= float(p["bulge_fraction_scale"]) <= 3.0:
        problems.append("bulge_fraction_scale must be in [0, 3]")
    if not 0.0 <= float(p["disk_clump_fraction"]) <= 0.5:
        problems.append("disk_clump_fraction must be in [0, 0.5]")
    if not isinstance(p["merger_trees"], bool):
        problems.append("merger_trees must be true or false")
    elif p["merger_trees"] and snaps and not problems:
        by_number = sorted(snaps, key=lambda s: int(s["snapshot"]))
        if any(float(x["redshift"]) <= float(y["redshift"])
               for x, y in zip(by_number, by_number[1:], strict=False)):
            problems.append("merger_trees needs snapshot numbers that increase as redshift "
                            "decreases (SubLink links each subhalo to a later snapshot)")
    if problems:
        raise SimBridgeConfigError("demo_universe: " + "; ".join(problems))
    return p


def generate_demo_universe(sim_dir: Path, params: dict, seed: int) -> dict:
    """Write a synthetic TNG-layout simulation to ``sim_dir`` and return a summary dict.

    ``params`` is the workflow's ``demo_universe`` section (missing keys take
    :data:`DEFAULT_DEMO_PARAMS`). The tree is built in ``<sim_dir>.partial`` and renamed to
    ``sim_dir`` at the end, replacing an existing one. The same seed gives byte-identical
    files. The summary (JSON-serialisable) holds the paths, the effective parameters, one
    entry per snapshot (counts of galaxies, groups, subhalos, particles), one per galaxy
    (stellar mass, ex-situ fraction, subfind index of its central, of its persistent satellite
    and of its merging satellite at each snapshot where they exist) and the SubLink tree files
    (none when ``merger_trees`` is false).
    """
    p = _check_demo_params(params)
    sim_dir = Path(sim_dir)
    partial = sim_dir.with_name(sim_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        snapshot_summaries, galaxy_summaries, n_tree_files = _build_universe(partial, p, int(seed))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if sim_dir.exists():
        # move the old tree aside first so that sim_dir is missing only for an instant
        old = sim_dir.with_name(sim_dir.name + ".old.partial")
        if old.exists():
            shutil.rmtree(old)
        sim_dir.rename(old)
        partial.rename(sim_dir)
        shutil.rmtree(old)
    else:
        partial.rename(sim_dir)
    base = sim_dir / "output"
    for entry in snapshot_summaries:
        tag = f"{entry['snapshot']:03d}"
        entry["snapdir"] = str(base / f"snapdir_{tag}")
        entry["groupcat_dir"] = str(base / f"groups_{tag}")
        entry["offsets_file"] = str(sim_dir / "postprocessing" / "offsets" /
                                    f"offsets_{tag}.hdf5")
        entry["stellar_assembly_file"] = str(sim_dir / "postprocessing" / "StellarAssembly" /
                                             f"stars_{tag}.hdf5")
    tree_dir = sim_dir / "postprocessing" / "trees" / "SubLink"
    return {
        "simulation": "synthetic IllustrisTNG-layout demo universe (SimBridge)",
        "sim_dir": str(sim_dir),
        "base_path": str(base),
        "seed": int(seed),
        "params": p,
        "snapshots": snapshot_summaries,
        "galaxies": galaxy_summaries,
        "sublink_tree_files": [str(tree_dir / f"tree_extended.{k}.hdf5")
                               for k in range(n_tree_files)],
    }


def _build_universe(root: Path, p: dict, seed: int) -> tuple[list[dict], list[dict], int]:
    """Draw the galaxies, write every snapshot under ``root``, then the merger trees.

    Returns the snapshot and galaxy summaries and the number of SubLink tree files written.
    """
    n_gal = int(p["n_galaxies"])
    h = float(p["hubble_param"])
    box = float(p["box_size_ckpc_h"])
    cosmo = _Cosmology(h, float(p["omega_matter"]), float(p["omega_lambda"]))
    snaps = sorted(({"snapshot": int(s["snapshot"]), "redshift": float(s["redshift"])}
                    for s in p["snapshots"]), key=lambda s: s["redshift"])
    for s in snaps:
        s["a"] = 1.0 / (1.0 + s["redshift"])
    a_final = snaps[0]["a"]
    a_prev = snaps[1]["a"] if len(snaps) > 1 else 0.9 * a_final

    rng = np.random.default_rng(seed)
    universe_rng, fuzz_rng, *galaxy_rngs = rng.spawn(2 + n_gal)
    lo, hi = (float(x) for x in p["log10_stellar_mass_range"])
    # stratified quantiles: every part of the mass function is populated even for few galaxies
    quantiles = (universe_rng.permutation(n_gal) + universe_rng.uniform(size=n_gal)) / n_gal
    log_mstar = _stellar_mass_quantile(quantiles, lo, hi)
    # jittered lattice of centres keeps the galaxies' haloes apart
    k = max(2, math.ceil(n_gal ** (1 / 3)) + 1)
    cells = universe_rng.permutation(k**3)[:n_gal]
    ijk = np.column_stack(np.unravel_index(cells, (k, k, k))).astype(f8)
    centres = (ijk + 0.5 + universe_rng.uniform(-0.3, 0.3, (n_gal, 3))) * (box / k)
    n_edge = 0 if p["edge_fraction"] <= 0 else max(1, round(p["edge_fraction"] * n_gal))
    edge_galaxies = set(universe_rng.choice(n_gal, n_edge, replace=False).tolist())
    edge_axes = universe_rng.integers(0, 3, n_gal)

    m_star_particle = float(p["star_particle_mass_msun"])
    # DM particle mass: a median-mass halo (40 x M* at the middle of the range) gets ~300
    m_dm = 40.0 * 10 ** (0.5 * (lo + hi)) / 300.0
    mass_table = np.zeros(6)
    mass_table[1] = msun_to_code_mass(m_dm, h)

    galaxies: list[_Galaxy] = []
    next_id = 1
    for i in range(n_gal):
        gal, next_id = _make_galaxy(
            i, galaxy_rngs[i], float(log_mstar[i]), centres[i],
            int(edge_axes[i]) if i in edge_galaxies else None,
            p, cosmo, a_final, a_prev, m_star_particle, m_dm, len(snaps), next_id,
        )
        galaxies.append(gal)
    n_outer = max(10, n_gal)
    outer_ids = next_id + fuzz_rng.permutation(2 * n_outer).astype(u8)
    wind_id_base = next_id + 2 * n_outer
    fuzz_snapshot_rngs = fuzz_rng.spawn(len(snaps))

    output = root / "output"
    snapshot_summaries = []
    # subfind index of each (galaxy, piece kind) at each snapshot, and the catalogs written
    subhalo_of: dict[int, dict[tuple[int, str], int]] = {}
    catalogs: dict[int, tuple[dict[str, NDArray], dict[str, NDArray]]] = {}
    for j, s in enumerate(snaps):
        header = {
            "Time": s["a"], "Redshift": s["redshift"], "BoxSize": box, "HubbleParam": h,
            "Omega0": cosmo.omega_m, "OmegaLambda": cosmo.omega_l,
            "OmegaBaryon": float(p["omega_baryon"]), "MassTable": mass_table,
        }
        wind_next = wind_id_base + (j + 1) * 2**32  # wind cells are new elements at each snapshot
        groups_pieces = []
        for gal in galaxies:
            pieces, fuzz, n_wind = _assemble_galaxy(gal, j, s["a"], a_final, cosmo, p, box,
                                                    m_star_particle, wind_next)
            wind_next += n_wind
            groups_pieces.append((pieces, fuzz))
        outer = _outer_fuzz(fuzz_snapshot_rngs[j], outer_ids, n_outer, box, s["a"], h,
                            m_star_particle)
        summary, subhalo_of[s["snapshot"]], catalogs[s["snapshot"]] = _write_demo_snapshot(
            output, s["snapshot"], header, groups_pieces, outer, p)
        summary.update({"redshift": s["redshift"], "scale_factor": s["a"]})
        summary["n_galaxies_above_1e10_msun"] = int(sum(
            g.stars["mass_final_msun"].astype(f8).sum() >= 1e10 for g in galaxies))
        snapshot_summaries.append(summary)
    n_tree_files = (len(_write_demo_trees(root, subhalo_of, catalogs)) if p["merger_trees"]
                    else 0)

    def ids_of(gal: int, kind: str) -> dict[str, int]:
        return {str(snap): ids[(gal, kind)] for snap, ids in subhalo_of.items()
                if (gal, kind) in ids}

    galaxy_summaries = []
    for gal in galaxies:
        st = gal.stars
        m_final = st["mass_final_msun"].astype(f8)
        galaxy_summaries.append({
            "galaxy": gal.index,
            "log10_stellar_mass_msun": round(float(np.log10(m_final.sum())), 6),
            "exsitu_mass_fraction": round(float(m_final[st["exsitu"]].sum() / m_final.sum()), 6),
            "straddles_box_edge": gal.straddles_edge,
            "has_satellite": gal.satellite is not None,
            "merger_scale_factor": round(gal.a_merger, 6),
            "central_subhalo_id": ids_of(gal.index, "central"),
            "satellite_subhalo_id": ids_of(gal.index, "satellite"),
            "merging_satellite_subhalo_id": ids_of(gal.index, "merging"),
        })
    return snapshot_summaries, galaxy_summaries, n_tree_files


def _write_demo_trees(
    root: Path, subhalo_of: dict[int, dict[tuple[int, str], int]],
    catalogs: dict[int, tuple[dict[str, NDArray], dict[str, NDArray]]],
) -> list[Path]:
    """SubLink trees from the demo's own bookkeeping, independent of particle IDs.

    Between consecutive snapshots a central descends to its galaxy's central, a persistent
    satellite to itself, and a merging satellite to itself while it still exists, else to its
    host's central.
    """
    nodes = [(snap, key) for snap in sorted(subhalo_of) for key in sorted(subhalo_of[snap])]
    index = {node: i for i, node in enumerate(nodes)}
    later = dict(zip(sorted(subhalo_of), sorted(subhalo_of)[1:], strict=False))
    descendant = np.full(len(nodes), -1, dtype=np.int64)
    for i, (snap, (gal, kind)) in enumerate(nodes):
        if snap not in later:
            continue
        nxt = later[snap]
        merged = kind == "merging" and (gal, kind) not in subhalo_of[nxt]
        descendant[i] = index[(nxt, (gal, "central") if merged else (gal, kind))]
    return write_sublink_trees(
        root, np.array([snap for snap, _ in nodes]),
        np.array([subhalo_of[snap][key] for snap, key in nodes]), descendant, catalogs)


def _make_galaxy(
    index: int, rng: np.random.Generator, log10_mstar: float, centre: NDArray,
    edge_axis: int | None, p: dict, cosmo: _Cosmology, a_final: float, a_prev: float,
    m_star_particle: float, m_dm: float, n_snaps: int, next_id: int,
) -> tuple[_Galaxy, int]:
    """Draw one galaxy (central + optional satellite) at the final snapshot."""
    h, box = cosmo.h, float(p["box_size_ckpc_h"])
    truth_rng, *snapshot_rngs = rng.spawn(1 + n_snaps)
    r = truth_rng
    mnorm = _mass_norm(log10_mstar)
    mstar = 10.0**log10_mstar
    n_star = max(50, round(mstar / m_star_particle))

    # ex-situ fraction: Beta with mean rising from 0.1 to 0.5 across the mass range, plus a rare
    # merger-dominated population (mean 0.86, more likely at high mass) so that f_ex > 0.8
    # exists but is rare, as in TNG
    mu, kappa = 0.1 + 0.4 * mnorm, 7.0
    if r.random() < 0.02 + 0.08 * mnorm:
        f_ex = float(r.beta(9.0, 1.5))
    else:
        f_ex = float(r.beta(mu * kappa, (1.0 - mu) * kappa))
    n_ex = round(f_ex * n_star)
    n_in = n_star - n_ex
    n_bulge = min(n_in, round((0.1 + 0.2 * mnorm) * float(p["bulge_fraction_scale"]) * n_in))
    # in-situ stellar halo ("splash": disk stars heated by mergers), up to 30% of the disk; it
    # shares the ex-situ halo's extent and heat, so extent and kinematics alone are ambiguous
    n_splash = round(r.uniform(0.0, 0.3) * (n_in - n_bulge))
    n_disk = n_in - n_bulge - n_splash

    r_d = (2.0 + 3.0 * mnorm) * 10 ** r.normal(0.0, 0.05) * float(p["disk_scale_factor"])
    z_d = 0.12 * r_d
    v_flat = 150.0 + 130.0 * mnorm
    sig_disk = 20.0 + 20.0 * mnorm
    log_z0 = math.log10(0.012 + 0.016 * mnorm)

    # in-situ disk: rotating, thin, younger outside (inside-out growth), older when massive
    pos_d, big_r, phi = _disk(r, n_disk, r_d, z_d)
    v_circ = v_flat * (1.0 - np.exp(-big_r / (0.5 * r_d)))
    vel_d = _cylindrical_velocity(r.normal(0, sig_disk, n_disk),
                                  v_circ + r.normal(0, 0.7 * sig_disk, n_disk),
                                  r.normal(0, 0.6 * sig_disk, n_disk), phi)
    u_d = np.clip(r.beta(2.2, 1.6 + 1.5 * mnorm, n_disk) + 0.06 * (big_r / r_d - 2.0), 0.0,
                  0.998)
    a_d = a_final * (0.3 + 0.7 * u_d)
    if float(p["disk_clump_fraction"]) > 0 and n_disk >= _CLUMPS_PER_DISK:
        _add_disk_clumps(r, pos_d, a_d, float(p["disk_clump_fraction"]), r_d, a_final)
    # in-situ bulge: compact, hot, older
    r_b = _hernquist_radii(r, n_bulge, 0.12 * r_d)
    pos_b = _spherical(r, r_b)
    vel_b = r.normal(0.0, 0.4 * v_flat, (n_bulge, 3))
    a_b = a_final * (0.3 + 0.7 * np.clip(r.beta(1.5, 4.0, n_bulge), 0.0, 0.998))
    # ex-situ halo: 2-3x the disk's half-mass radius, dispersion-dominated, old, metal-poor.
    # Its metallicity, formation epoch and flattening vary from galaxy to galaxy (the accreted
    # dwarfs differ in mass and history), so the observable maps constrain the ex-situ map only
    # up to a few galaxy-level unknowns: the posterior is not a single map.
    r_half_disk = 1.678 * r_d
    a_ex_scale = _hernquist_scale_for_half_mass(r.uniform(2.0, 3.0) * r_half_disk)
    dlog_z_ex = r.uniform(-0.3, 0.5)  # mass-metallicity offset of the accreted dwarfs, dex
    a_ex_start = r.uniform(0.08, 0.35)  # formation epoch of the accreted stars, / a_final
    q_ex = r.uniform(0.5, 1.0)  # flattening of the accreted halo along the disk axis
    v_rot_ex = r.uniform(0.0, 0.5) * v_flat  # prograde accretion spins the accreted halo up
    r_ex = _hernquist_radii(r, n_ex, a_ex_scale)
    pos_ex = _spherical(r, r_ex) * np.array([1.0, 1.0, q_ex])
    phi_ex = np.arctan2(pos_ex[:, 1], pos_ex[:, 0])
    sig_ex = 100.0 + 100.0 * mnorm
    vel_ex = r.normal(0.0, sig_ex, (n_ex, 3)) + _cylindrical_velocity(
        np.zeros(n_ex), np.full(n_ex, v_rot_ex), np.zeros(n_ex), phi_ex)
    # the splash: as extended and hot as the accreted halo, old, with in-situ metallicity
    pos_s = _spherical(r, _hernquist_radii(r, n_splash, a_ex_scale * r.uniform(0.6, 1.2)))
    vel_s = r.normal(0.0, 0.8 * sig_ex, (n_splash, 3))
    a_s = a_final * (0.3 + 0.7 * np.clip(r.beta(1.5, 3.0, n_splash), 0.0, 0.998))
    pos_b, vel_b, a_b = (np.concatenate([x, y]) for x, y in
                         ((pos_b, pos_s), (vel_b, vel_s), (a_b, a_s)))
    a_ex = a_final * (a_ex_start + 0.3 * r.beta(2.0, 2.0, n_ex))

    pos = np.vstack([pos_d, pos_b, pos_ex])
    vel = np.vstack([vel_d, vel_b, vel_ex])
    a_form = _variant_formation_times(np.concatenate([a_d, a_b, a_ex]), a_final, p)
    exsitu = np.concatenate([np.zeros(n_in, bool), np.ones(n_ex, bool)])
    radius = np.linalg.norm(pos, axis=1)
    log_z = np.concatenate([
        log_z0 - 0.05 * radius[:n_in] / r_d - 0.15 * (1.0 - a_form[:n_in] / a_final)
        + r.normal(0.0, 0.08, n_in),
        math.log10(0.002 + 0.004 * mnorm) + dlog_z_ex - 0.05 * radius[n_in:] / a_ex_scale
        + r.normal(0.0, 0.12, n_ex),
    ])
    log_z += float(p["metallicity_offset_dex"])
    rotation = _random_rotation(r)
    t_final = float(cosmo.time_gyr(a_final))
    age_final = t_final - cosmo.time_gyr(a_form.astype(f8))
    mass_final = m_star_particle * r.uniform(0.8, 1.2, n_star)

    # the last merger: with probability 1/2 a recent one, after the previous snapshot, whose
    # stars (a random part of the ex-situ ones) still sit in a satellite at earlier snapshots
    late = np.zeros(n_star, dtype=bool)
    a_merger = 0.0
    recent, f_late = r.uniform() < 0.5, r.uniform(0.1, 0.35)
    if recent and f_late * n_ex >= 20:  # a satellite of >= ~20 stars, resolved by Subfind
        a_merger = float(r.uniform(a_prev + 0.2 * (a_final - a_prev),
                                   a_final - 0.05 * (a_final - a_prev)))
        late[n_in:] = r.uniform(size=n_ex) < f_late
    pos -= _mass_centre(pos, mass_final)  # the potential minimum sits on the stars
    stars = {
        "pos": (pos @ rotation.T).astype(f4), "vel": (vel @ rotation.T).astype(f4),
        "a_form": a_form, "metallicity": np.clip(10**log_z, 1e-4, 0.06).astype(f4),
        "mass_final_msun": mass_final.astype(f4),
        "init_msun": (mass_final / (1.0 - _mass_loss_fraction(age_final))),
        "exsitu": exsitu, "late": late,
    }

    # gas disk, 0.2 x M*, a few hundred cells of unequal mass
    n_gas = int(np.clip(round(150 * (mstar / 1e10) ** 0.35), 60, 600))
    m_gas_total = 0.2 * mstar * r.uniform(0.6, 1.4)
    r_g, z_g = 1.5 * r_d, 0.1 * r_d
    pos_g, big_r_g, phi_g = _disk(r, n_gas, r_g, z_g)
    vel_g = _cylindrical_velocity(r.normal(0, 10.0, n_gas),
                                  v_flat * (1.0 - np.exp(-big_r_g / (0.5 * r_d))), r.normal(
                                      0, 8.0, n_gas), phi_g)
    m_gas = r.uniform(0.6, 1.4, n_gas)
    m_gas *= m_gas_total / m_gas.sum()
    star_forming = big_r_g < 2.0 * r_g
    ssfr = 10 ** (-9.8 - 0.9 * mnorm + r.normal(0, 0.2))
    sfr = np.where(star_forming, m_gas, 0.0)
    sfr *= ssfr * mstar / max(sfr.sum(), 1e-30)
    rho = (m_gas_total / (4 * np.pi * r_g**2 * z_g)
           * np.exp(-big_r_g / r_g - np.abs(pos_g[:, 2]) / z_g))
    gas = {
        "pos": (pos_g @ rotation.T).astype(f4), "vel": (vel_g @ rotation.T).astype(f4),
        "mass_msun": m_gas, "sfr": sfr.astype(f4), "density_msun_kpc3": rho,
        "metallicity": np.clip(10 ** (log_z0 + 0.04 - 0.05 * big_r_g / r_d
                                      + r.normal(0, 0.05, n_gas)), 1e-4, 0.06).astype(f4),
        "internal_energy": (10 ** r.uniform(2.0, 4.0, n_gas)).astype(f4),
    }

    # dark matter halo, 30-50 x M*, NFW truncated at r200
    n_dm = max(10, round(mstar * r.uniform(30.0, 50.0) / m_dm))
    m_halo = n_dm * m_dm + mstar + m_gas_total
    r200 = (3.0 * m_halo / (4.0 * np.pi * 200.0 * cosmo.rho_crit_msun_kpc3(a_final))) ** (1 / 3)
    v200 = math.sqrt(G_KPC_KMS2_PER_MSUN * m_halo / r200)
    conc = 10.0 * (m_halo / 1e12) ** -0.1
    dm = {"pos": _spherical(r, _nfw_radii(r, n_dm, r200, conc)).astype(f4),
          "vel": r.normal(0.0, 0.65 * v200, (n_dm, 3)).astype(f4)}
    n_move = 0
    if a_merger > 0:
        m_late = mass_final[late].sum()
        n_move = int(np.clip(round(20.0 * m_late / m_dm), 3, n_dm // 4))
    dm_to_merger = np.zeros(n_dm, dtype=bool)
    dm_to_merger[r.choice(n_dm, n_move, replace=False)] = True
    n_fuzz = int(r.integers(2, 8))
    fuzz_dm = {"pos": _spherical(r, r200 * r.uniform(1.05, 1.6, n_fuzz)).astype(f4),
               "vel": r.normal(0.0, 0.5 * v200, (n_fuzz, 3)).astype(f4)}

    satellite = None
    if r.uniform() < 0.4:
        m_sat = mstar * 10 ** r.uniform(-2.2, -1.2)
        n_sat = max(40, round(m_sat / m_star_particle))
        scale = 0.8 * (m_sat / 1e9) ** 0.25
        n_sat_dm = max(5, round(20.0 * m_sat / m_dm))
        a_sat = _variant_formation_times(a_final * (0.15 + 0.7 * r.beta(2.0, 2.0, n_sat)),
                                         a_final, p)
        age_sat = t_final - cosmo.time_gyr(a_sat.astype(f8))
        mass_sat = m_star_particle * r.uniform(0.8, 1.2, n_sat)
        satellite = {
            "stars": {
                "pos": _centred(_spherical(r, _hernquist_radii(r, n_sat, scale)),
                                mass_sat).astype(f4),
                "vel": r.normal(0.0, 25.0, (n_sat, 3)).astype(f4), "a_form": a_sat,
                "metallicity": np.clip(10 ** (math.log10(0.006) + r.normal(0, 0.1, n_sat)
                                              + float(p["metallicity_offset_dex"])),
                                       1e-4, 0.06).astype(f4),
                "mass_final_msun": mass_sat.astype(f4),
                "init_msun": mass_sat / (1.0 - _mass_loss_fraction(age_sat)),
                "exsitu": np.zeros(n_sat, bool), "late": np.zeros(n_sat, bool),
            },
            "dm": {"pos": _spherical(r, _hernquist_radii(r, n_sat_dm, 5 * scale)).astype(f4),
                   "vel": r.normal(0.0, 30.0, (n_sat_dm, 3)).astype(f4)},
        }

    # IDs: one shuffled block per galaxy, the same at every snapshot
    blocks = [("stars", n_star), ("gas", n_gas), ("dm", n_dm), ("fuzz", n_fuzz)]
    if satellite is not None:
        blocks += [("sat_stars", len(satellite["stars"]["a_form"])),
                   ("sat_dm", len(satellite["dm"]["pos"]))]
    total = sum(n for _, n in blocks)
    ids = (next_id + r.permutation(total)).astype(u8)
    start = 0
    id_of = {}
    for name, n in blocks:
        id_of[name] = ids[start:start + n]
        start += n
    stars["ids"], gas["ids"], dm["ids"], fuzz_dm["ids"] = (id_of["stars"], id_of["gas"],
                                                          id_of["dm"], id_of["fuzz"])
    if satellite is not None:
        satellite["stars"]["ids"], satellite["dm"]["ids"] = id_of["sat_stars"], id_of["sat_dm"]

    centre = np.array(centre, dtype=f8)
    if edge_axis is not None:
        # centre within ~0.8 disk half-mass radii of the box face at 0 (= BoxSize)
        offset = r.uniform(-0.8, 0.8) * r_half_disk * h / a_final
        centre[edge_axis] = np.mod(offset, box)
    gal = _Galaxy(
        index=index, log10_mstar=log10_mstar, centre_final=centre,
        bulk_vel_kms=r.normal(0.0, 150.0, 3), rotation=rotation, disk_scale_kpc=r_d,
        v_flat_kms=v_flat, r200_kpc=r200, v200_kms=v200, log10_z_insitu=log_z0, stars=stars,
        gas=gas, dm=dm, fuzz_dm=fuzz_dm, a_merger=a_merger, dm_to_merger=dm_to_merger,
        satellite=satellite, snapshot_rngs=snapshot_rngs, straddles_edge=edge_axis is not None,
    )
    return gal, next_id + total


def _wrap(x: NDArray, box: float) -> NDArray:
    """Wrap into [0, box); np.mod can round a tiny negative up to exactly box."""
    w = np.mod(x, box)
    w[w >= box] -= box
    return w


def _star_fields(
    st: dict[str, NDArray], sel: NDArray, a: float, cosmo: _Cosmology
) -> dict[str, NDArray]:
    """Masses, metallicity, formation time and toy photometrics of selected stars at ``a``."""
    a_form = st["a_form"][sel]
    age = float(cosmo.time_gyr(a)) - cosmo.time_gyr(a_form.astype(f8))
    init = st["init_msun"][sel]
    mass = init * (1.0 - _mass_loss_fraction(age))
    return {
        "ParticleIDs": st["ids"][sel],
        "Masses": msun_to_code_mass(mass, cosmo.h).astype(f4),
        "GFM_InitialMass": msun_to_code_mass(init, cosmo.h).astype(f4),
        "GFM_Metallicity": st["metallicity"][sel],
        "GFM_StellarFormationTime": a_form,
        "GFM_StellarPhotometrics": _toy_magnitudes(init, age, st["metallicity"][sel]).astype(f4),
    }


def _sorted_by_radius(pos_rel: NDArray, fields: dict[str, NDArray], *extra: NDArray) -> tuple:
    """Order members by radius (a stand-in for Subfind's binding-energy order)."""
    order = np.argsort(np.einsum("ij,ij->i", pos_rel, pos_rel), kind="stable")
    return {k: v[order] for k, v in fields.items()}, *(e[order] for e in extra)


def _assemble_galaxy(
    gal: _Galaxy, j: int, a: float, a_final: float, cosmo: _Cosmology, p: dict, box: float,
    m_star_particle: float, wind_id_start: int,
) -> tuple[list[_Piece], _Piece, int]:
    """Subhalo pieces (central, satellite, merging satellite) and inner fuzz at scale factor a."""
    rng = gal.snapshot_rngs[j]
    h = cosmo.h
    sqrt_a = math.sqrt(a)
    to_comoving = h / a
    # progenitor centre: the final centre moved back along the bulk velocity
    dt = float(cosmo.time_gyr(a_final) - cosmo.time_gyr(a))
    centre = _wrap(gal.centre_final - gal.bulk_vel_kms * dt * KPC_PER_KMS_GYR * h
                   / (0.5 * (a + a_final)), box)

    def file_pos(rel_kpc: NDArray, host: NDArray) -> NDArray:
        return _wrap(host + rel_kpc.astype(f8) * to_comoving, box)

    def file_vel(rel_kms: NDArray, bulk: NDArray) -> NDArray:
        return ((rel_kms.astype(f8) + bulk) / sqrt_a).astype(f4)

    st = gal.stars
    a_form = st["a_form"].astype(f8)
    merging_now = gal.a_merger > a
    in_central = (a_form < a) & ~(st["late"] & merging_now)
    in_merger = (a_form < a) & st["late"] & merging_now

    # wind cells: launched recently from the disk, fast bipolar outflow along the disk axis
    n_central = int(in_central.sum())
    wf = float(p["wind_fraction"])
    n_wind = max(1, round(wf * n_central / (1.0 - wf))) if wf > 0 else 0
    r_d = gal.disk_scale_kpc
    side = rng.choice([-1.0, 1.0], n_wind)
    wpos, _, wphi = _disk(rng, n_wind, 0.7 * r_d, 0.1)
    wpos[:, 2] = side * rng.uniform(0.2, 3.0, n_wind)
    wvel = _cylindrical_velocity(rng.normal(0, 50.0, n_wind), np.full(n_wind, 0.8 * gal.v_flat_kms),
                                 side * rng.uniform(300.0, 800.0, n_wind), wphi)
    wpos, wvel = wpos @ gal.rotation.T, wvel @ gal.rotation.T
    wind_mass = m_star_particle * rng.uniform(0.2, 1.0, n_wind)
    wind = {
        "ParticleIDs": (wind_id_start + rng.permutation(n_wind)).astype(u8),
        "Masses": msun_to_code_mass(wind_mass, h).astype(f4),
        "GFM_InitialMass": msun_to_code_mass(wind_mass, h).astype(f4),
        "GFM_Metallicity": np.clip(10 ** (gal.log10_z_insitu + rng.normal(0, 0.1, n_wind)),
                                   1e-4, 0.06).astype(f4),
        # wind cells store minus the scale factor at launch
        "GFM_StellarFormationTime": (-a * rng.uniform(0.97, 1.0, n_wind)).astype(f4),
        "GFM_StellarPhotometrics": np.full((n_wind, 8), NO_LIGHT_MAGNITUDE, dtype=f4),
    }

    stars = _star_fields(st, in_central, a, cosmo)
    star_rel = np.vstack([st["pos"][in_central].astype(f8), wpos])
    star_vel = np.vstack([st["vel"][in_central].astype(f8), wvel])
    stars = {k: np.concatenate([stars[k], wind[k]]) for k in stars}
    insitu = np.concatenate([np.where(st["exsitu"][in_central], 0, 1), np.full(n_wind, -1)])
    stars, star_rel, star_vel, insitu = _sorted_by_radius(star_rel, stars, star_rel, star_vel,
                                                          insitu)
    stars["Coordinates"] = file_pos(star_rel, centre)
    stars["Velocities"] = file_vel(star_vel, gal.bulk_vel_kms)

    g = gal.gas
    gas, gas_rel, gas_vel = _sorted_by_radius(g["pos"].astype(f8), {
        "ParticleIDs": g["ids"], "Masses": msun_to_code_mass(g["mass_msun"], h).astype(f4),
        "GFM_Metallicity": g["metallicity"], "StarFormationRate": g["sfr"],
        "Density": (g["density_msun_kpc3"] * (h / 1e10) * (a / h) ** 3).astype(f4),
        "InternalEnergy": g["internal_energy"]}, g["pos"], g["vel"])
    gas["Coordinates"] = file_pos(gas_rel, centre)
    gas["Velocities"] = file_vel(gas_vel, gal.bulk_vel_kms)

    dm_keep = ~(gal.dm_to_merger & merging_now)
    dm, dm_rel, dm_vel = _sorted_by_radius(gal.dm["pos"][dm_keep].astype(f8),
                                           {"ParticleIDs": gal.dm["ids"][dm_keep]},
                                           gal.dm["pos"][dm_keep], gal.dm["vel"][dm_keep])
    dm["Coordinates"] = file_pos(dm_rel, centre)
    dm["Velocities"] = file_vel(dm_vel, gal.bulk_vel_kms)
    pieces = [_Piece(gal.index, "central", centre, {0: gas, 1: dm, 4: stars},
                     insitu.astype(np.int8))]

    def satellite_piece(kind: str, sel_stars: dict, star_sel: NDArray, sat_dm: dict,
                        dm_sel: NDArray, scale_kpc: float, sigma: float,
                        distance: tuple[float, float]) -> _Piece:
        """A satellite orbiting inside the group at ``distance`` kpc from the central."""
        off = _unit_vectors(rng, 1)[0] * rng.uniform(*distance)
        tangential = np.cross(off, _unit_vectors(rng, 1)[0])
        bulk = gal.bulk_vel_kms + 0.6 * gal.v200_kms * tangential / np.linalg.norm(tangential)
        host = _wrap(centre + off * to_comoving, box)
        n_s = int(star_sel.sum())
        # merging satellites get a fresh compact body; persistent ones keep their own layout
        fields = _star_fields(sel_stars, star_sel, a, cosmo)
        s_rel = (sel_stars["pos"][star_sel].astype(f8) if kind == "satellite"
                 else _centred(_spherical(rng, _hernquist_radii(rng, n_s, scale_kpc)),
                               fields["Masses"]))
        s_vel = (sel_stars["vel"][star_sel].astype(f8) if kind == "satellite"
                 else rng.normal(0.0, sigma, (n_s, 3)))
        fields, s_rel, s_vel = _sorted_by_radius(s_rel, fields, s_rel, s_vel)
        fields["Coordinates"], fields["Velocities"] = file_pos(s_rel, host), file_vel(s_vel, bulk)
        n_d = int(dm_sel.sum())
        d_rel = (sat_dm["pos"][dm_sel].astype(f8) if kind == "satellite"
                 else _spherical(rng, _hernquist_radii(rng, n_d, 5.0 * scale_kpc)))
        d_vel = (sat_dm["vel"][dm_sel].astype(f8) if kind == "satellite"
                 else rng.normal(0.0, 1.5 * sigma, (n_d, 3)))
        dmf, d_rel, d_vel = _sorted_by_radius(d_rel, {"ParticleIDs": sat_dm["ids"][dm_sel]},
                                              d_rel, d_vel)
        dmf["Coordinates"], dmf["Velocities"] = file_pos(d_rel, host), file_vel(d_vel, bulk)
        parts = {4: fields, 1: dmf} if n_s else {1: dmf}
        # the satellite's own stars formed in its main progenitor: in situ to the satellite
        return _Piece(gal.index, kind, host, parts, np.ones(n_s, dtype=np.int8))

    if gal.satellite is not None:
        sat = gal.satellite
        sel = sat["stars"]["a_form"].astype(f8) < a
        pieces.append(satellite_piece("satellite", sat["stars"], sel, sat["dm"],
                                      np.ones(len(sat["dm"]["ids"]), bool), 0.0, 0.0,
                                      (40.0, max(60.0, 0.5 * gal.r200_kpc))))
    if in_merger.any():
        m_late = float(st["mass_final_msun"][in_merger].sum())
        pieces.append(satellite_piece(
            "merging", st, in_merger, gal.dm, gal.dm_to_merger,
            float(np.clip(0.8 * (m_late / 1e9) ** 0.25, 0.5, 3.0)),
            40.0, (30.0, 120.0)))
    # the central stays first; satellites follow by decreasing particle count, as in Subfind
    pieces = pieces[:1] + sorted(pieces[1:], key=lambda pc: -pc.n_total())

    fz = gal.fuzz_dm
    fuzz = _Piece(gal.index, "fuzz", centre, {1: {
        "ParticleIDs": fz["ids"], "Coordinates": file_pos(fz["pos"], centre),
        "Velocities": file_vel(fz["vel"], gal.bulk_vel_kms)}}, np.zeros(0, np.int8))
    return pieces, fuzz, n_wind


def _outer_fuzz(
    rng: np.random.Generator, ids: NDArray, n: int, box: float, a: float, h: float,
    m_star_particle: float,
) -> dict[int, dict[str, NDArray]]:
    """Diffuse DM and gas outside every group, uniform in the box."""
    dm_ids, gas_ids = ids[:n], ids[n:2 * n]
    return {
        1: {"ParticleIDs": dm_ids, "Coordinates": _wrap(rng.uniform(0, box, (n, 3)), box),
            "Velocities": (rng.normal(0, 100.0, (n, 3)) / math.sqrt(a)).astype(f4)},
        0: {"ParticleIDs": gas_ids, "Coordinates": _wrap(rng.uniform(0, box, (n, 3)), box),
            "Velocities": (rng.normal(0, 100.0, (n, 3)) / math.sqrt(a)).astype(f4),
            "Masses": msun_to_code_mass(2 * m_star_particle * rng.uniform(0.5, 1.5, n),
                                        h).astype(f4),
            "GFM_Metallicity": (10 ** rng.uniform(-4, -3, n)).astype(f4),
            "StarFormationRate": np.zeros(n, f4),
            "Density": (10 ** rng.uniform(-9, -8, n)).astype(f4),
            "InternalEnergy": (10 ** rng.uniform(4, 5, n)).astype(f4)},
    }


def _write_demo_snapshot(
    output: Path, snap: int, header: dict, groups_pieces: list[tuple[list[_Piece], _Piece]],
    outer: dict[int, dict[str, NDArray]], p: dict,
) -> tuple[dict, dict[tuple[int, str], int], tuple[dict[str, NDArray], dict[str, NDArray]]]:
    """Put the pieces in FoF order (groups by decreasing length) and write the snapshot.

    Returns the snapshot summary, the subfind index of every (galaxy, piece kind) and the
    (groups, subhalos) catalog as written.
    """
    def group_len(item: tuple[list[_Piece], _Piece]) -> int:
        subs, fuzz = item
        return sum(pc.n_total() for pc in subs) + fuzz.n_total()

    order = sorted(range(len(groups_pieces)), key=lambda i: (-group_len(groups_pieces[i]), i))
    fields_of = {0: _GAS_FIELDS, 1: _DM_FIELDS, 4: _STAR_FIELDS}
    columns: dict[int, dict[str, list]] = {t: {k: [] for k in fields_of[t]} for t in fields_of}
    insitu: list[NDArray] = []
    group_len_type, group_nsubs, group_pos = [], [], []
    sub_len_type, sub_pos = [], []
    subhalo_of: dict[tuple[int, str], int] = {}
    for gi in order:
        subs, fuzz = groups_pieces[gi]
        glt = np.zeros(6, dtype=np.int64)
        for pc in [*subs, fuzz]:
            lt = np.array([pc.n(t) for t in range(6)])
            glt += lt
            for t in pc.parts:
                for k in fields_of[t]:
                    columns[t][k].append(pc.parts[t][k])
            if pc.kind == "fuzz":
                continue
            subhalo_of[(pc.galaxy, pc.kind)] = len(sub_len_type)
            sub_len_type.append(lt)
            sub_pos.append(pc.centre)
            if 4 in pc.parts:
                insitu.append(pc.insitu)
        group_len_type.append(glt)
        group_nsubs.append(len(subs))
        group_pos.append(subs[0].centre)
    for t, fields in outer.items():
        for k in fields_of[t]:
            columns[t][k].append(fields[k])
    particles = {t: {k: np.concatenate(v) for k, v in cols.items()} for t, cols in columns.items()}
    insitu_all = np.concatenate(insitu)  # every star lives in a subhalo: no outer-fuzz stars
    catalog = write_tng_snapshot(
        output, snap, header,
        groups={"GroupLenType": np.array(group_len_type), "GroupNsubs": np.array(group_nsubs),
                "GroupPos": np.array(group_pos)},
        subhalos={"SubhaloLenType": np.array(sub_len_type), "SubhaloPos": np.array(sub_pos)},
        particles=particles, insitu=insitu_all,
        n_snapshot_chunks=int(p["n_snapshot_chunks"]), n_catalog_chunks=int(p["n_catalog_chunks"]),
    )
    wind = particles[4]["GFM_StellarFormationTime"] <= 0
    summary = {
        "snapshot": int(snap),
        "n_galaxies": len(groups_pieces),
        "n_groups": len(group_len_type),
        "n_subhalos": len(sub_len_type),
        "num_part_total": [len(particles[t]["ParticleIDs"]) if t in particles else 0
                           for t in range(6)],
        "n_star_particles": int((~wind).sum()),
        "n_wind_cells": int(wind.sum()),
    }
    return summary, subhalo_of, catalog

"""Reading IllustrisTNG-layout simulations through illustris_python and h5py.

Every read goes through the real library (``illustris_python``) or plain h5py on the archive's
own files, so the same code serves TNG50/100/300, CAMELS-TNG (once given offsets) and the demo
universe. Failures of the underlying libraries are turned into :class:`SimBridgeInputError`
messages that name the file and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
from numpy.typing import NDArray

from simbridge.errors import SimBridgeInputError
from simbridge.io import open_hdf5 as io_open_hdf5

#: PartType4 fields the map extraction needs.
STAR_FIELDS: tuple[str, ...] = (
    "Coordinates",
    "Velocities",
    "Masses",
    "GFM_StellarFormationTime",
    "GFM_Metallicity",
)
STARS = 4  # PartType4: stars and wind cells

#: Plausible range of the dimensionless Hubble parameter h in a Header.
HUBBLE_PARAM_RANGE = (0.3, 1.5)
#: Header attributes that must agree between every snapshot chunk and group-catalog chunk.
CROSS_CHECKED_HEADER = ("HubbleParam", "Redshift", "Time")

_REDOWNLOAD = (
    "re-download this file from the archive (it is truncated or corrupt); "
    "compare its size with the original"
)


@dataclass(frozen=True)
class SnapshotHeader:
    """Cosmology and particle counts of one snapshot, from the Header of its chunk 0."""

    path: Path
    snapshot: int
    scale_factor: float
    redshift: float
    hubble_param: float
    omega_matter: float
    omega_lambda: float
    box_size_ckpc_h: float
    num_part_total: np.ndarray
    n_chunks: int


def open_hdf5(path: str | Path, what: str = "HDF5 file", fix: str = _REDOWNLOAD
              ) -> contextlib.AbstractContextManager[h5py.File]:
    """Open an archive HDF5 file for reading (:func:`simbridge.io.open_hdf5`).

    ``fix`` is what a corrupt file needs: archive files are re-downloaded (the default), files
    the workflow wrote are rebuilt by rerunning their job.
    """
    return io_open_hdf5(path, what, fix, missing_fix="check the path in config.yaml")


def check_base_path(base_path: str | Path) -> Path:
    """Check that ``base_path`` is a TNG ``output/`` directory and return it as a Path."""
    base = Path(base_path).expanduser()
    fix = (
        "set tng.base_path in config.yaml to the simulation's output/ directory (the one that "
        "holds snapdir_NNN/ and groups_NNN/, with postprocessing/ beside it), or to null for "
        "the demo universe"
    )
    if not base.is_dir():
        raise SimBridgeInputError("TNG base path does not exist or is not a directory", base, fix)
    if not any(base.glob("snapdir_*")) and not any(base.glob("groups_*")):
        raise SimBridgeInputError(
            "TNG base path holds no snapdir_NNN/ or groups_NNN/ directories", base, fix
        )
    return base


def snapshot_archive_files(base_path: str | Path, snapshot: int) -> list[Path]:
    """The archive files the workflow reads for one snapshot, as they are on disk now.

    Snapshot and group-catalog chunks (snapdir_NNN/, groups_NNN/), the offsets file and the
    StellarAssembly file; none of them need exist (a missing one is reported when read).
    """
    base = Path(base_path).expanduser()
    tag = f"{int(snapshot):03d}"
    files: list[Path] = []
    for folder in (base / f"snapdir_{tag}", base / f"groups_{tag}"):
        if folder.is_dir():
            files += sorted(p for p in folder.iterdir() if p.name.endswith(".hdf5"))
    for single in (snapshot_chunk_path(base, int(snapshot), 0), offsets_path(base, int(snapshot)),
                   stellar_assembly_path(base, int(snapshot))):
        if single.is_file() and single not in files:
            files.append(single)
    return files


def files_fingerprint(paths: Sequence[Path]) -> str:
    """A short hash of the names, sizes and modification times of ``paths`` ('none' if empty).

    Cheap (one stat per file) and changed by any replaced, repaired, added or removed file,
    including a replacement that carries an older modification time (a copy with cp -p,
    rsync or wget keeps the archive's time, which Snakemake's own mtime check misses).
    """
    if not paths:
        return "none"
    digest = hashlib.sha256()
    for path in paths:
        st = path.stat()
        digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return f"{len(paths)} files, sha256 {digest.hexdigest()[:16]}"


def available_snapshots(base_path: str | Path) -> list[int]:
    """Snapshot numbers that have a snapdir_NNN directory under ``base_path``."""
    found = []
    for p in Path(base_path).glob("snapdir_*"):
        with contextlib.suppress(ValueError):
            found.append(int(p.name.split("_")[1]))
    return sorted(found)


def snapshot_chunk_path(base_path: str | Path, snapshot: int, chunk: int = 0) -> Path:
    """Path of one snapshot chunk, as illustris_python resolves it.

    When neither naming exists, the TNG name (snap_NNN.K.hdf5) is returned for error messages
    rather than illustris_python's fallback (snapshot_NNN.K.hdf5).
    """
    path = Path(il.snapshot.snapPath(str(base_path), snapshot, chunk))
    if not path.is_file() and path.name.startswith("snapshot_"):
        return path.with_name(path.name.replace("snapshot_", "snap_", 1))
    return path


def read_snapshot_header(base_path: str | Path, snapshot: int) -> SnapshotHeader:
    """Read the snapshot Header (cosmology, scale factor, box, counts) from chunk 0."""
    base = check_base_path(base_path)
    path = snapshot_chunk_path(base, snapshot, 0)
    if not path.is_file():
        raise SimBridgeInputError(
            f"snapshot {snapshot} not found",
            path,
            f"check tng.snapshots in config.yaml; snapshots present: {available_snapshots(base)}",
        )
    with open_hdf5(path, f"snapshot {snapshot} chunk 0") as fh:
        if "Header" not in fh:
            raise SimBridgeInputError("snapshot chunk has no /Header group", path, _REDOWNLOAD)
        attrs = dict(fh["Header"].attrs)
    _check_header_keys(attrs, path)
    cosmo = {k: float(attrs[k]) for k in ("Time", "Redshift", "HubbleParam", "Omega0",
                                           "OmegaLambda", "BoxSize")}
    bad = [k for k, v in cosmo.items() if not np.isfinite(v)]
    if bad or cosmo["Time"] <= 0 or cosmo["BoxSize"] <= 0:
        raise SimBridgeInputError(f"snapshot Header has invalid values {cosmo}", path, _REDOWNLOAD)
    if not np.isclose(cosmo["Redshift"], 1.0 / cosmo["Time"] - 1.0, rtol=1e-4, atol=1e-6):
        raise SimBridgeInputError(
            f"snapshot Header has Redshift = {cosmo['Redshift']:g} but Time (scale factor) = "
            f"{cosmo['Time']:g}, i.e. z = {1.0 / cosmo['Time'] - 1.0:g}",
            path,
            "repair the Header so that Redshift = 1/Time - 1, or re-download the chunk",
        )
    h = cosmo["HubbleParam"]
    if not HUBBLE_PARAM_RANGE[0] <= h <= HUBBLE_PARAM_RANGE[1]:
        hint = (f" (it looks like H0 in km/s/Mpc; h would be {h / 100:g})"
                if 30 <= h <= 150 else "")
        raise SimBridgeInputError(
            f"snapshot Header has HubbleParam = {h:g}, outside the plausible range "
            f"{HUBBLE_PARAM_RANGE[0]}-{HUBBLE_PARAM_RANGE[1]} of h = H0 / (100 km/s/Mpc){hint}; "
            "every mass and length would be converted wrongly",
            path,
            "the Header must hold h (TNG: 0.6774), not H0: repair the HubbleParam attribute of "
            "every chunk's Header (h5py: f['Header'].attrs['HubbleParam'] = 0.6774) or "
            "re-download the snapshot",
        )
    num_part = np.asarray(il.snapshot.getNumPart(attrs), dtype=np.int64)
    return SnapshotHeader(
        path=path,
        snapshot=int(snapshot),
        scale_factor=cosmo["Time"],
        redshift=cosmo["Redshift"],
        hubble_param=cosmo["HubbleParam"],
        omega_matter=cosmo["Omega0"],
        omega_lambda=cosmo["OmegaLambda"],
        box_size_ckpc_h=cosmo["BoxSize"],
        num_part_total=num_part,
        n_chunks=int(attrs["NumFilesPerSnapshot"]),
    )


def _check_header_keys(attrs: dict, path: Path) -> None:
    """Raise naming the missing snapshot Header attributes, with the fix that fits each."""
    required = ("Time", "Redshift", "HubbleParam", "Omega0", "OmegaLambda", "BoxSize",
                "NumPart_Total", "NumFilesPerSnapshot")
    missing = [k for k in required if k not in attrs]
    if not missing:
        return
    if {"NumPart_Total", "NumFilesPerSnapshot"} & set(missing):
        problem = f"snapshot Header lacks {missing} (an API cutout? those have no NumPart_Total)"
        fix = "use full snapshot chunks, or add NumPart_Total/NumFilesPerSnapshot to the Header"
    elif missing == ["BoxSize"]:
        problem = ("snapshot Header lacks BoxSize (the comoving box side in ckpc/h, needed to "
                   "wrap positions periodically around each galaxy)")
        fix = ("add it to the Header of every chunk (h5py: f['Header'].attrs['BoxSize'] = "
               "75000.0 for TNG100, 35000.0 for TNG50, 205000.0 for TNG300; the group "
               "catalog's Header holds the same value), or re-download the snapshot")
    else:
        problem = f"snapshot Header lacks {missing}"
        fix = ("add them to the Header of every chunk (the group catalog's Header holds "
               "Time, Redshift, HubbleParam, Omega0, OmegaLambda and BoxSize too), or "
               "re-download the snapshot")
    raise SimBridgeInputError(problem, path, fix)


def check_header_agreement(reference: SnapshotHeader, paths: Sequence[Path],
                           headers: Sequence[dict] | None = None) -> None:
    """Raise if a file's Header disagrees with ``reference`` (snapshot chunk 0) on HubbleParam,
    Redshift or Time; the message names both files. Attributes a file lacks are not compared.

    ``headers`` are the files' Header attributes when the caller has read them already.
    """
    expected = {"HubbleParam": reference.hubble_param, "Redshift": reference.redshift,
                "Time": reference.scale_factor}
    for k, path in enumerate(paths):
        if headers is not None:
            attrs = headers[k]
        else:
            with open_hdf5(path) as fh:
                attrs = dict(fh["Header"].attrs) if "Header" in fh else {}
        for key in CROSS_CHECKED_HEADER:
            if key not in attrs:
                continue
            value = float(np.asarray(attrs[key]).ravel()[0])
            if not np.isclose(value, expected[key], rtol=1e-6, atol=1e-9):
                raise SimBridgeInputError(
                    f"Header {key} = {value:g} in {path} but {expected[key]:g} in "
                    f"{reference.path}: the files come from different snapshots or runs, so "
                    "units and ages would be wrong",
                    path,
                    f"use files of one run and snapshot {reference.snapshot}: re-download "
                    f"{path.name} (or {reference.path.name}, whichever is wrong)",
                )


def check_group_catalog_header(base_path: str | Path, header: SnapshotHeader) -> None:
    """Cross-check every group-catalog chunk's Header with the snapshot's (chunk 0)."""
    check_header_agreement(header, group_catalog_paths(base_path, header.snapshot))


def snapshot_chunk_paths(base_path: str | Path, header: SnapshotHeader) -> list[Path]:
    """All chunk paths of a snapshot; raises if any is missing."""
    paths = [snapshot_chunk_path(base_path, header.snapshot, k) for k in range(header.n_chunks)]
    return _require_all(paths, f"chunks of snapshot {header.snapshot}",
                        "download the complete snapshot (all snap_NNN.*.hdf5 chunks)")


def _require_all(paths: list[Path], what: str, fix: str) -> list[Path]:
    """Return ``paths`` if every file exists, else raise naming the first missing one."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SimBridgeInputError(f"{len(missing)} of {len(paths)} {what} are missing",
                                  missing[0], fix)
    return paths


def group_catalog_paths(base_path: str | Path, snapshot: int) -> list[Path]:
    """All group-catalog chunk paths of a snapshot; raises if chunk 0 or any other is missing."""
    first = Path(il.groupcat.gcPath(str(base_path), snapshot, 0))
    if not first.is_file():
        raise SimBridgeInputError(
            f"group catalog of snapshot {snapshot} not found",
            first,
            "download groups_NNN/fof_subhalo_tab_NNN.*.hdf5 for this snapshot",
        )
    with open_hdf5(first, "group catalog chunk 0") as fh:
        n_files = int(fh["Header"].attrs["NumFiles"])
    paths = [Path(il.groupcat.gcPath(str(base_path), snapshot, k)) for k in range(n_files)]
    return _require_all(paths, "group-catalog chunks",
                        "download the complete group catalog of this snapshot")


def _first_unreadable(paths: Sequence[Path], group: str, fields: Sequence[str]) -> None:
    """Raise a SimBridgeInputError for the first file in which ``group/field`` cannot be read."""
    for path in paths:
        with open_hdf5(path) as fh:
            if group not in fh:
                continue
            for field in fields:
                if field not in fh[group]:
                    if len(fh[group].keys()) == 0:
                        continue  # an empty chunk holds no datasets
                    raise SimBridgeInputError(
                        f"{group} has no field {field}", path,
                        "use an archive that provides this field (full TNG catalogs do)",
                    )
                try:
                    fh[group][field][...]
                except OSError as err:
                    raise SimBridgeInputError(
                        f"cannot read {group}/{field} ({err})", path, _REDOWNLOAD
                    ) from None


_CATALOG_LOADERS = {
    "Subhalo": (il.groupcat.loadSubhalos, "Nsubgroups_Total", "subhalos"),
    "Group": (il.groupcat.loadHalos, "Ngroups_Total", "groups"),
}


def read_catalog(
    base_path: str | Path, snapshot: int, kind: str, fields: Sequence[str]
) -> dict[str, np.ndarray]:
    """Read ``Subhalo`` or ``Group`` fields with illustris_python's loadSubhalos/loadHalos.

    Returns a dict of arrays (always a dict, even for one field) plus ``count``.
    """
    loader, total_key, noun = _CATALOG_LOADERS[kind]
    paths = group_catalog_paths(base_path, snapshot)
    with open_hdf5(paths[0], "group catalog chunk 0") as fh:
        n_total = int(fh["Header"].attrs[total_key])
    fields = list(fields)
    try:
        result = loader(str(base_path), snapshot, fields=fields)
    except Exception as err:  # noqa: BLE001 - il raises bare Exception, h5py OSError/KeyError
        _first_unreadable(paths, kind, fields)
        raise SimBridgeInputError(
            f"illustris_python could not read {kind} fields {fields}: {err}",
            paths[0].parent,
            _REDOWNLOAD,
        ) from None
    if not isinstance(result, dict):  # a single field comes back as a bare array
        result = {fields[0]: result, "count": len(result)}
    if result.get("count", 0) != n_total:
        raise SimBridgeInputError(
            f"read {result.get('count')} {noun} but the catalog header says {n_total}",
            paths[0].parent,
            _REDOWNLOAD,
        )
    return result


def read_subhalo_catalog(
    base_path: str | Path, snapshot: int, fields: Sequence[str]
) -> dict[str, np.ndarray]:
    """Subhalo fields of the group catalog (see :func:`read_catalog`)."""
    return read_catalog(base_path, snapshot, "Subhalo", fields)


def subhalo_has_field(base_path: str | Path, snapshot: int, field: str) -> bool:
    """True if the subhalo catalog carries ``field`` (e.g. SubhaloFlag, absent in CAMELS)."""
    for path in group_catalog_paths(base_path, snapshot):
        with open_hdf5(path) as fh:
            if "Subhalo" in fh and len(fh["Subhalo"].keys()) > 0:
                return field in fh["Subhalo"]
    return False


def offsets_path(base_path: str | Path, snapshot: int) -> Path:
    """Path of postprocessing/offsets/offsets_NNN.hdf5, as illustris_python resolves it."""
    return Path(il.groupcat.offsetPath(str(base_path), snapshot))


def read_subhalo_particle_offsets(base_path: str | Path, snapshot: int) -> np.ndarray:
    """First global particle index of each subhalo by type, shape (Nsubhalos, 6), int64.

    Uses the offsets file when present (TNG); otherwise derives it from FoF ordering (CAMELS
    and other archives without one): groups in order, each group's subhalos in order, then
    its inner fuzz.
    """
    path = offsets_path(base_path, snapshot)
    if path.is_file():
        with open_hdf5(path, "offsets file") as fh:
            try:
                return np.asarray(fh["Subhalo/SnapByType"][...], dtype=np.int64)
            except (KeyError, OSError) as err:
                raise SimBridgeInputError(
                    f"offsets file lacks a readable Subhalo/SnapByType ({err})", path, _REDOWNLOAD
                ) from None
    subs = read_subhalo_catalog(base_path, snapshot, ["SubhaloLenType"])
    groups = read_catalog(base_path, snapshot, "Group", ["GroupLenType", "GroupNsubs"])
    return fof_offsets(groups["GroupLenType"], groups["GroupNsubs"], subs["SubhaloLenType"])[1]


def fof_offsets(
    group_len_type: NDArray, group_nsubs: NDArray, subhalo_len_type: NDArray
) -> tuple[NDArray, NDArray]:
    """Global particle offsets (int64, (N,6)) of groups and subhalos stored in FoF order.

    Each group holds its subhalos in order and then its inner fuzz; a subhalo starts at its
    group's offset plus the summed lengths of the earlier subhalos of the same group.
    """
    glt = np.asarray(group_len_type, dtype=np.int64).reshape(-1, 6)
    slt = np.asarray(subhalo_len_type, dtype=np.int64).reshape(-1, 6)
    nsubs = np.asarray(group_nsubs, dtype=np.int64)
    group_off = np.zeros_like(glt)
    group_off[1:] = np.cumsum(glt, axis=0)[:-1]
    grnr = np.repeat(np.arange(len(glt)), nsubs)
    sub_cum = np.zeros_like(slt)
    sub_cum[1:] = np.cumsum(slt, axis=0)[:-1]
    first_sub = np.concatenate([[0], np.cumsum(nsubs)[:-1]]).astype(np.int64)
    sub_off = group_off[grnr] + sub_cum - sub_cum[first_sub[grnr]] if len(slt) else sub_cum
    return group_off, sub_off


def read_chunk_offsets(base_path: str | Path, header: SnapshotHeader) -> np.ndarray:
    """First global index of each particle type in each snapshot chunk, shape (6, nchunks).

    This is the ``snapOffsets`` array that ``il.snapshot.loadSubset`` expects in ``subset``.
    Read from the chunk headers (NumPart_ThisFile) so that it holds for any archive.
    """
    counts = np.zeros((header.n_chunks, 6), dtype=np.int64)
    paths = snapshot_chunk_paths(base_path, header)
    headers = []
    for k, path in enumerate(paths):
        with open_hdf5(path, f"snapshot {header.snapshot} chunk {k}") as fh:
            if "Header" not in fh:
                raise SimBridgeInputError("snapshot chunk has no /Header group", path,
                                          _REDOWNLOAD)
            headers.append(dict(fh["Header"].attrs))
        counts[k] = headers[-1]["NumPart_ThisFile"]
    check_header_agreement(header, paths, headers)
    if not np.array_equal(counts.sum(axis=0), header.num_part_total):
        raise SimBridgeInputError(
            "the chunks' NumPart_ThisFile do not add up to NumPart_Total "
            f"({counts.sum(axis=0).tolist()} vs {header.num_part_total.tolist()})",
            header.path.parent,
            "the snapshot is incomplete or mixes chunks of different snapshots; re-download it",
        )
    offsets = np.zeros_like(counts)
    offsets[1:] = np.cumsum(counts, axis=0)[:-1]
    return offsets.T.copy()


def load_star_range(
    base_path: str | Path,
    header: SnapshotHeader,
    chunk_offsets: np.ndarray,
    offset: int,
    length: int,
    fields: Sequence[str] = STAR_FIELDS,
) -> dict[str, np.ndarray]:
    """Read ``length`` PartType4 elements from global index ``offset`` with one loadSubset call.

    Particles are stored in subhalo order, so a contiguous range serves a whole batch of
    subhalos; ``loadSubset`` crosses chunk boundaries itself.
    """
    fields = list(fields)
    if length == 0:
        return {f: np.zeros(0) for f in fields}
    offset_type = np.zeros(6, dtype=np.int64)
    len_type = np.zeros(6, dtype=np.int64)
    offset_type[STARS], len_type[STARS] = offset, length
    subset = {"offsetType": offset_type, "lenType": len_type, "snapOffsets": chunk_offsets}
    try:
        data = il.snapshot.loadSubset(
            str(base_path), header.snapshot, "stars", fields=fields, subset=subset, sq=False
        )
    except Exception as err:  # noqa: BLE001 - il raises bare Exception and h5py OSError
        chunks = _chunks_spanning(chunk_offsets[STARS], offset, length)
        _first_unreadable(
            [snapshot_chunk_path(base_path, header.snapshot, k) for k in chunks],
            "PartType4",
            fields,
        )
        raise SimBridgeInputError(
            f"illustris_python could not read PartType4 {fields} [{offset}:{offset + length}]: "
            f"{err}",
            header.path.parent,
            _REDOWNLOAD,
        ) from None
    return {f: data[f] for f in fields}


def _chunks_spanning(type_offsets: np.ndarray, offset: int, length: int) -> list[int]:
    """Indices of the chunks that hold global elements [offset, offset + length)."""
    starts = np.asarray(type_offsets)
    first = int(np.searchsorted(starts, offset, side="right") - 1)
    last = int(np.searchsorted(starts, offset + max(length, 1) - 1, side="right") - 1)
    return list(range(max(first, 0), last + 1))


def stellar_assembly_path(base_path: str | Path, snapshot: int) -> Path:
    """postprocessing/StellarAssembly/stars_NNN.hdf5 beside the output/ directory."""
    name = f"stars_{snapshot:03d}.hdf5"
    return Path(base_path).parent / "postprocessing" / "StellarAssembly" / name


def check_stellar_assembly(base_path: str | Path, header: SnapshotHeader) -> Path:
    """Check the StellarAssembly file exists and has one entry per PartType4 element."""
    path = stellar_assembly_path(base_path, header.snapshot)
    if not path.is_file():
        raise SimBridgeInputError(
            f"StellarAssembly catalog of snapshot {header.snapshot} is missing",
            path,
            "download postprocessing/StellarAssembly/stars_NNN.hdf5 (Rodriguez-Gomez et al. "
            "2016) for this snapshot and place it beside output/",
        )
    with open_hdf5(path, "StellarAssembly catalog") as fh:
        if "InSitu" not in fh:
            raise SimBridgeInputError("StellarAssembly catalog has no InSitu dataset", path,
                                      _REDOWNLOAD)
        n = fh["InSitu"].shape[0]
    if n != header.num_part_total[STARS]:
        raise SimBridgeInputError(
            f"StellarAssembly has {n} entries but snapshot {header.snapshot} has "
            f"{header.num_part_total[STARS]} PartType4 elements",
            path,
            "this file belongs to another snapshot or simulation; use stars_NNN.hdf5 of the "
            "same run and snapshot",
        )
    return path


def load_insitu_range(
    path: Path, offset: int, length: int, particle_ids: np.ndarray | None = None
) -> np.ndarray:
    """InSitu flags (1 in situ, 0 ex situ, -1 none) of PartType4 elements [offset, offset+length).

    If ``particle_ids`` is given, the catalog's ParticleID column is checked against them.
    """
    with open_hdf5(path, "StellarAssembly catalog") as fh:
        try:
            insitu = np.asarray(fh["InSitu"][offset : offset + length], dtype=np.int8)
            if particle_ids is not None and "ParticleID" in fh:
                ids = fh["ParticleID"][offset : offset + length]
                if not np.array_equal(ids, particle_ids):
                    raise SimBridgeInputError(
                        f"StellarAssembly ParticleID [{offset}:{offset + length}] does not "
                        "match the snapshot's PartType4 ParticleIDs",
                        path,
                        "use the StellarAssembly file of the same run and snapshot",
                    )
        except OSError as err:
            raise SimBridgeInputError(f"cannot read InSitu ({err})", path, _REDOWNLOAD) from None
    return insitu

"""Reader of CAMELS simulations in the archive's own layout (the demo suite uses the same code).

Layout (CAMELS docs, 2024 reorganisation, and the older one still in many copies)::

    <base>/Sims/<Suite>[_DM]/L25n256/<Set>/<Set>_<N>/snapshot_090.hdf5     (new)
    <base>/FOF_Subfind/<Suite>[_DM]/L25n256/<Set>/<Set>_<N>/groups_090.hdf5
    <base>/Sims/<Suite>[_DM]/<Set>_<N>/snap_033.hdf5                       (old)
    <base>/FOF_Subfind/<Suite>[_DM]/<Set>_<N>/fof_subhalo_tab_033.hdf5
    <base>/Sims/<Suite>/.../CosmoAstroSeed_<Suite>_L25n256_<Set>.txt

N-body (``_DM``) snapshots are Blosc-compressed (HDF5 filter 32001): ``hdf5plugin`` must be
imported before h5py reads them; this module imports it and turns the filter error into a clear
SimBridgeInputError. Positions are returned in Mpc/h (files: ckpc/h), masses in Msun/h
(files: 1e10 Msun/h).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from simbridge.errors import SimBridgeInputError

try:  # registers the Blosc filter with h5py; reading N-body snapshots needs it
    import hdf5plugin  # noqa: F401

    HAVE_HDF5PLUGIN = True
except ImportError:  # pragma: no cover - hdf5plugin is a dependency
    HAVE_HDF5PLUGIN = False

#: ckpc/h -> Mpc/h and 1e10 Msun/h -> Msun/h
KPC_TO_MPC = 1.0e-3
MASS_UNIT_MSUN_H = 1.0e10

#: (snapshot file, catalogue file, z=0 snapshot number) of each file-name generation
NAME_GENERATIONS = {
    "new": ("snapshot_{snap:03d}.hdf5", ("groups_{snap:03d}.hdf5",
                                         "fof_subhalo_tab_{snap:03d}.hdf5"), 90),
    "old": ("snap_{snap:03d}.hdf5", ("fof_subhalo_tab_{snap:03d}.hdf5",
                                     "groups_{snap:03d}.hdf5"), 33),
}


@dataclass(frozen=True)
class RunFiles:
    """The snapshot and group-catalogue files of one run of one suite."""

    run: str
    suite: str
    snapshot: Path
    catalog: Path


def suite_name(suite: str, dark_matter_only: bool) -> str:
    """'IllustrisTNG' -> 'IllustrisTNG_DM' for the N-body twin."""
    return f"{suite}_DM" if dark_matter_only else suite


def run_dirs(base: Path, tree: str, suite: str, box: str, run: str) -> list[Path]:
    """Candidate folders of a run under Sims/ or FOF_Subfind/ (new layout first, then old)."""
    set_name = run.rsplit("_", 1)[0] if not run.startswith("1P") else "1P"
    return [base / tree / suite / box / set_name / run, base / tree / suite / run]


def find_run_files(base: str | Path, suite: str, run: str, snapshot: int | None = None,
                   box: str = "L25n256", dark_matter_only: bool = False) -> RunFiles:
    """Locate the snapshot and the catalogue of a run, accepting both file-name generations.

    ``snapshot`` None: z = 0 of whichever generation is found (090 new, 033 old).
    """
    base = Path(base).expanduser()
    name = suite_name(suite, dark_matter_only)
    tried: list[str] = []
    for snap_dir in run_dirs(base, "Sims", name, box, run):
        for _gen, (snap_tpl, cat_tpls, z0) in NAME_GENERATIONS.items():
            snap = z0 if snapshot is None else snapshot
            snap_file = snap_dir / snap_tpl.format(snap=snap)
            tried.append(str(snap_file))
            if not snap_file.is_file():
                continue
            cat_dirs = run_dirs(base, "FOF_Subfind", name, box, run) + [snap_dir]
            cat_tried = []
            for cat_dir in cat_dirs:
                for cat_tpl in cat_tpls:
                    cat_file = cat_dir / cat_tpl.format(snap=snap)
                    cat_tried.append(str(cat_file))
                    if cat_file.is_file():
                        return RunFiles(run, name, snap_file, cat_file)
            raise SimBridgeInputError(
                f"the group catalogue of {name} run {run} (snapshot {snap:03d}) is missing; "
                f"looked for {cat_tried}", snap_file,
                "copy the run's FOF_Subfind/ catalogue from the CAMELS archive (same suite, set "
                "and run folder) or point camels.base_path at a complete copy")
    raise SimBridgeInputError(
        f"no snapshot of {name} run {run} found (looked for {tried})", base,
        "check camels.base_path, camels.suite and camels.runs; both the 2024 layout "
        "(Sims/<Suite>/L25n256/<Set>/<Set>_N/snapshot_090.hdf5) and the older one "
        "(Sims/<Suite>/<Set>_N/snap_033.hdf5) are accepted")


def find_twin_files(base: str | Path, suite: str, run: str, snapshot: int | None = None,
                    box: str = "L25n256") -> tuple[RunFiles, RunFiles]:
    """(N-body run, hydrodynamic run) of one parameter set; a run without its twin is an error."""
    found = []
    for dm_only in (True, False):
        try:
            found.append(find_run_files(base, suite, run, snapshot, box, dm_only))
        except SimBridgeInputError as err:
            other = "hydrodynamic" if dm_only else "N-body (_DM)"
            raise SimBridgeInputError(
                f"run {run} has no {('N-body' if dm_only else 'hydrodynamic')} twin: the "
                f"dm2gal branch needs both runs of a parameter set\n{err}", base,
                f"copy {suite_name(suite, dm_only)}/{run} from the archive, or leave {run} out "
                f"of camels.runs (its {other} run alone cannot be used)") from None
    return found[0], found[1]


def _open(path: Path, what: str) -> h5py.File:
    if not path.is_file():
        raise SimBridgeInputError(f"{what} is missing", path,
                                  "check camels.base_path or rebuild the demo suite")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise SimBridgeInputError(f"{what} cannot be opened as HDF5 ({err})", path,
                                  "re-download the file from the CAMELS archive") from None


def _read(dataset: h5py.Dataset, path: Path) -> np.ndarray:
    """Read a dataset, turning a missing HDF5 filter (Blosc without hdf5plugin) into a clear
    error."""
    try:
        return dataset[()]
    except OSError as err:
        if "plugin" in str(err) or "filter" in str(err).lower():
            raise SimBridgeInputError(
                f"{dataset.name} is compressed with an HDF5 filter that this h5py cannot apply "
                f"({err}); CAMELS N-body snapshots use Blosc (filter 32001)", path,
                "pip install hdf5plugin and import hdf5plugin before h5py opens the file "
                "(simbridge.sims.camels does this when hdf5plugin is installed)") from None
        raise


def read_header(path: str | Path) -> dict:
    """The snapshot or catalogue Header attributes (numpy scalars as Python values)."""
    path = Path(path)
    with _open(path, "CAMELS file") as fh:
        if "Header" not in fh:
            raise SimBridgeInputError("the file has no /Header group", path,
                                      "re-download the file from the CAMELS archive")
        return {k: (v.tolist() if hasattr(v, "tolist") else v)
                for k, v in fh["Header"].attrs.items()}


def read_particles(path: str | Path, part_type: int = 1,
                   fields: tuple[str, ...] = ("Coordinates",)) -> dict[str, np.ndarray]:
    """Fields of one particle type. Coordinates in Mpc/h (float64), Masses in Msun/h.

    DM masses come from Header/MassTable[1] when there is no Masses dataset (TNG, N-body).
    """
    path = Path(path)
    with _open(path, "CAMELS snapshot") as fh:
        group = f"PartType{part_type}"
        header = dict(fh["Header"].attrs)
        if group not in fh:
            n = int(header.get("NumPart_Total", np.zeros(6))[part_type])
            if n == 0:
                return {f: np.zeros((0, 3) if f == "Coordinates" else (0,)) for f in fields}
            raise SimBridgeInputError(f"the snapshot lacks {group}", path,
                                      "re-download the snapshot from the CAMELS archive")
        out: dict[str, np.ndarray] = {}
        for field in fields:
            if field == "Masses" and "Masses" not in fh[group]:
                n = fh[group]["ParticleIDs"].shape[0]
                out[field] = np.full(n, float(header["MassTable"][part_type]) * MASS_UNIT_MSUN_H)
                continue
            if field not in fh[group]:
                raise SimBridgeInputError(f"{group} has no field {field}", path,
                                          "re-download the snapshot from the CAMELS archive")
            data = _read(fh[group][field], path)
            if field == "Coordinates":
                data = data.astype(np.float64) * KPC_TO_MPC
            elif field == "Masses":
                data = data.astype(np.float64) * MASS_UNIT_MSUN_H
            out[field] = data
        return out


def read_group_catalog(path: str | Path, group_fields: tuple[str, ...] = (),
                       subhalo_fields: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Group and Subhalo fields of a Subfind catalogue, positions in Mpc/h, masses in Msun/h
    (radii in Mpc/h). An empty catalogue gives empty arrays."""
    path = Path(path)
    scale = {"GroupPos": KPC_TO_MPC, "SubhaloPos": KPC_TO_MPC, "Group_R_Crit200": KPC_TO_MPC,
             "GroupMass": MASS_UNIT_MSUN_H, "Group_M_Crit200": MASS_UNIT_MSUN_H,
             "SubhaloMassType": MASS_UNIT_MSUN_H, "SubhaloMass": MASS_UNIT_MSUN_H}
    out: dict[str, np.ndarray] = {}
    with _open(path, "CAMELS group catalogue") as fh:
        for group, fields in (("Group", group_fields), ("Subhalo", subhalo_fields)):
            for field in fields:
                if group not in fh or field not in fh[group]:
                    count_key = "Ngroups_Total" if group == "Group" else "Nsubgroups_Total"
                    if int(fh["Header"].attrs.get(count_key, 1)) == 0:
                        out[field] = np.zeros((0, 3) if field.endswith("Pos") else (0,))
                        continue
                    raise SimBridgeInputError(f"the catalogue lacks {group}/{field}", path,
                                              "re-download the catalogue from the CAMELS archive")
                out[field] = _read(fh[group][field], path).astype(np.float64) * scale.get(field, 1)
    return out


def parameter_table_path(base: str | Path, suite: str, set_name: str = "LH",
                         box: str = "L25n256") -> Path:
    """CosmoAstroSeed_<suite>_<box>_<set>.txt (searched in the new and the old place)."""
    base = Path(base).expanduser()
    name = f"CosmoAstroSeed_{suite}_{box}_{set_name}.txt"
    for cand in (base / "Sims" / suite / box / set_name / name, base / "Sims" / suite / box / name,
                 base / "Sims" / suite / name, base / name):
        if cand.is_file():
            return cand
    raise SimBridgeInputError(f"the parameter table {name} is missing", base / "Sims" / suite,
                              "copy it from the CAMELS archive (it sits beside the runs)")


def read_parameter_table(path: str | Path) -> dict[str, dict[str, float]]:
    """{run: {Omega_m, sigma_8, A_SN1, A_AGN1, A_SN2, A_AGN2, seed}} from a CosmoAstroSeed file."""
    path = Path(path)
    names = ["Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2", "seed"]
    table: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split()
        if len(cols) < len(names) + 1:
            raise SimBridgeInputError(f"malformed row in the parameter table: {line!r}", path,
                                      "re-download the CosmoAstroSeed file from the archive")
        table[cols[0]] = {n: float(v) for n, v in zip(names, cols[1:1 + len(names)], strict=True)}
    return table


def list_runs(base: str | Path, suite: str, set_name: str = "LH", box: str = "L25n256"
              ) -> list[str]:
    """Runs of a set that have an N-body twin folder (sorted by their number)."""
    base = Path(base).expanduser()
    found = set()
    for root in (base / "Sims" / suite_name(suite, True) / box / set_name,
                 base / "Sims" / suite_name(suite, True)):
        if root.is_dir():
            found |= {p.name for p in root.glob(f"{set_name}_*") if p.is_dir()}
    return sorted(found, key=lambda r: int(r.rsplit("_", 1)[1]) if r.rsplit("_", 1)[1].isdigit()
                  else 0)

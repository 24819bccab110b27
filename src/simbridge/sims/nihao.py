"""Reading NIHAO (Gasoline tipsy) snapshots and their AHF halos through pynbody.

Layout: ``<base_path>/<galaxy>/<galaxy>.<step>`` (e.g. ``g1.05e11/g1.05e11.01024``), with the
run's ``.param`` file in the galaxy's folder (or its parent), auxiliary arrays
``<snapshot>.OxMassFrac``, ``.FeMassFrac``, ... beside the snapshot, and AHF catalogues
``<snapshot>.z<redshift>.AHF_halos``/``.AHF_particles``/``.AHF_substructure``.

Halo numbering: ``halos(halo_numbers="v1")``, i.e. 1 is the first halo of the AHF catalogue
(AHF writes halos by decreasing particle number, so the main halo of a zoom), as NIHAO scripts
using pynbody v1's ``h[1]`` meant.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from simbridge.errors import SimBridgeInputError

log = logging.getLogger(__name__)

#: A NIHAO snapshot file name: <galaxy>.<5-digit step>, galaxy named g<halo mass> (g1.05e11).
SNAPSHOT_NAME = re.compile(r"^(?P<galaxy>g\d+(?:\.\d+)?e\d+)\.(?P<step>\d{5})$")


class SnapshotProblem(Exception):
    """A snapshot that cannot be a building block; ``reason`` goes to the error table."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class BuildingBlock:
    """The main halo of one snapshot, in physical units (Msun, Gyr)."""

    stellar_mass_msun: float
    dm_mass_msun: float
    time_gyr: float
    redshift: float
    n_star: int
    star_mass_msun: NDArray
    ox_mass_frac: NDArray
    fe_mass_frac: NDArray
    metals: NDArray


def list_snapshots(base_path: str | Path, galaxies: list[str] | None = None) -> list[dict]:
    """Every snapshot ``<galaxy>/<galaxy>.<step>`` under ``base_path``, sorted by galaxy, step.

    Returns dicts with galaxy, snapshot (file name), step and path. ``galaxies`` restricts the
    scan (a listed galaxy without a folder is an error).
    """
    base = Path(base_path)
    if not base.is_dir():
        raise SimBridgeInputError("the NIHAO base path is not a directory", path=base,
                                  fix="set nihao.base_path to the folder holding one folder "
                                      "per simulation (g1.05e11/, ...), or null for the demo")
    folders = sorted(p for p in base.iterdir() if p.is_dir() and SNAPSHOT_NAME.match(
        p.name + ".00000"))
    if galaxies is not None:
        missing = sorted(set(galaxies) - {p.name for p in folders})
        if missing:
            raise SimBridgeInputError(f"nihao.galaxies lists {missing}, which have no folder",
                                      path=base, fix="fix the names or set nihao.galaxies: null")
        folders = [p for p in folders if p.name in set(galaxies)]
    out = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            m = SNAPSHOT_NAME.match(path.name)
            if m and m.group("galaxy") == folder.name and path.is_file():
                out.append({"galaxy": folder.name, "snapshot": path.name,
                            "step": int(m.group("step")), "path": str(path)})
    if not out:
        raise SimBridgeInputError(
            "no NIHAO snapshots (<galaxy>/<galaxy>.<5-digit step>) found", path=base,
            fix="point nihao.base_path at a NIHAO copy, or set it to null for the demo suite")
    return out


def read_building_block(path: str | Path, halo_number: int = 1) -> BuildingBlock:
    """Load a snapshot with pynbody and measure its main halo (``halo_number``, v1 numbering).

    Raises SnapshotProblem (reason: unreadable snapshot, no halo catalogue, no halo, no stars,
    missing abundance arrays) for a snapshot that cannot be used.
    """
    import pynbody

    path = Path(path)
    if not path.is_file():
        raise SnapshotProblem("unreadable snapshot", f"{path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim = pynbody.load(str(path))
            if "dKpcUnit" not in sim._paramfile:  # pynbody keeps the parsed .param here
                raise SnapshotProblem("unreadable snapshot",
                                      f"no .param file beside {path} (units and cosmology)")
            sim.physical_units()
            time_gyr = float(sim.properties["time"].in_units("Gyr"))
            redshift = float(sim.properties["z"])
    except SnapshotProblem:
        raise
    except Exception as err:  # noqa: BLE001 - any pynbody failure means this file is unusable
        raise SnapshotProblem("unreadable snapshot", f"{type(err).__name__}: {err}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            halos = sim.halos(halo_numbers="v1", write_fpos=False)
    except Exception as err:  # noqa: BLE001 - pynbody raises its own error for no catalogue
        raise SnapshotProblem("no halo catalogue", f"{type(err).__name__}: {err}") from None
    if len(halos) < halo_number:
        raise SnapshotProblem("no halo", f"the AHF catalogue holds {len(halos)} halos, "
                                         f"nihao.halo_number is {halo_number}")
    try:
        main = halos[halo_number]
        stars, dark = main.s, main.dm
        n_star = len(stars)
        if n_star == 0:
            raise SnapshotProblem("no stars", f"halo {halo_number} holds no star particles")
        star_mass = np.asarray(stars["mass"].in_units("Msol"), dtype=np.float64)
        dm_mass = float(np.sum(dark["mass"].in_units("Msol"), dtype=np.float64))
        arrays = {k: np.asarray(stars[k], dtype=np.float64)
                  for k in ("OxMassFrac", "FeMassFrac", "metals")}
    except SnapshotProblem:
        raise
    except KeyError as err:
        raise SnapshotProblem("missing abundance arrays", f"{err} not loadable") from None
    except Exception as err:  # noqa: BLE001 - truncated particle data or aux arrays
        raise SnapshotProblem("unreadable snapshot", f"{type(err).__name__}: {err}") from None
    return BuildingBlock(stellar_mass_msun=float(star_mass.sum()), dm_mass_msun=dm_mass,
                         time_gyr=time_gyr, redshift=redshift, n_star=n_star,
                         star_mass_msun=star_mass, ox_mass_frac=arrays["OxMassFrac"],
                         fe_mass_frac=arrays["FeMassFrac"], metals=arrays["metals"])

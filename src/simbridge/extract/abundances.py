"""Chemical-abundance planes of NIHAO building blocks: [Fe/H], [O/Fe] and their histograms.

Abundance ratios are computed here from the raw mass fractions (``FeMassFrac``, ``OxMassFrac``,
``metals``) with an explicit solar table, not with pynbody's derived ``feh``/``ofe``: pynbody's
solar constants are not the Asplund (2009) values its comment names (pynbody issue #930) and it
overwrites zero mass fractions in place with the snapshot's smallest non-zero value.

Definitions (mass fractions X; hydrogen from the Gasoline helium prescription that pynbody uses,
``X_He = 0.236 + 2.1 Z`` and ``X_H = 1 - Z - X_He``):

    [Fe/H] = log10(X_Fe / X_H) - log10(X_Fe,sun / X_H,sun)
    [O/Fe] = log10(X_O / X_Fe) - log10(X_O,sun / X_Fe,sun)

A star with a zero O or Fe mass fraction has no finite ratio; ``zero_mass_fraction`` says what
happens to it: ``drop`` (default: the star is left out of the plane) or ``floor`` (the zero is
replaced by ``zero_floor_mass_fraction``). Either way the stars concerned are counted per
snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.io import atomic_output, write_provenance

log = logging.getLogger(__name__)

# Asplund, Grevesse, Sauval & Scott (2009, ARA&A 47, 481): present-day solar photosphere,
# Table 1 (log eps = log10(N_X/N_H) + 12) and Table 4 (X = 0.7381, Y = 0.2485, Z = 0.0134).
ASPLUND09_X_H = 0.7381
ASPLUND09_LOG_EPS = {"O": 8.69, "Fe": 7.50}
#: Standard atomic weights (IUPAC) in atomic mass units.
ATOMIC_WEIGHT = {"H": 1.008, "O": 15.999, "Fe": 55.845}


def asplund09_mass_fraction(element: str) -> float:
    """Solar mass fraction of ``element``: X_H (A_el / A_H) 10^(log eps - 12)."""
    return ASPLUND09_X_H * ATOMIC_WEIGHT[element] / ATOMIC_WEIGHT["H"] * 10.0 ** (
        ASPLUND09_LOG_EPS[element] - 12.0)


#: The solar table used everywhere in the branch (mass fractions): X_O = 5.74e-3,
#: X_Fe = 1.29e-3, X_H = 0.7381.
SOLAR_MASS_FRACTIONS = {
    "H": ASPLUND09_X_H,
    "O": asplund09_mass_fraction("O"),
    "Fe": asplund09_mass_fraction("Fe"),
}

ZERO_POLICIES = ("drop", "floor")
WEIGHTINGS = ("counts", "mass")
#: Units of one histogram pixel, per weighting.
HISTOGRAM_UNITS = {"counts": "star particles", "mass": "Msun"}


def hydrogen_mass_fraction(metals: ArrayLike) -> NDArray:
    """X_H = 1 - Z - (0.236 + 2.1 Z), Gasoline's helium prescription (as pynbody derives it)."""
    z = np.asarray(metals, dtype=np.float64)
    return 1.0 - z - (0.236 + 2.1 * z)


@dataclass
class StarAbundances:
    """[Fe/H] and [O/Fe] of the stars of one snapshot that have finite ratios."""

    feh: NDArray
    ofe: NDArray
    mass_msun: NDArray
    n_zero_ox: int
    n_zero_fe: int
    n_dropped: int


def abundance_ratios(
    ox_mass_frac: ArrayLike,
    fe_mass_frac: ArrayLike,
    metals: ArrayLike,
    mass_msun: ArrayLike,
    zero_mass_fraction: str = "drop",
    zero_floor_mass_fraction: float = 1e-10,
) -> StarAbundances:
    """[Fe/H] and [O/Fe] per star from mass fractions, with the solar table above.

    Inputs are copied, never modified. ``zero_mass_fraction`` is ``drop`` or ``floor``.
    """
    if zero_mass_fraction not in ZERO_POLICIES:
        raise SimBridgeConfigError(
            f"abundances.zero_mass_fraction = {zero_mass_fraction!r}; use one of {ZERO_POLICIES}")
    x_o = np.array(ox_mass_frac, dtype=np.float64)
    x_fe = np.array(fe_mass_frac, dtype=np.float64)
    x_h = hydrogen_mass_fraction(metals)
    mass = np.array(mass_msun, dtype=np.float64)
    zero_o, zero_fe = x_o <= 0, x_fe <= 0
    keep = np.ones(x_o.shape, dtype=bool)
    if zero_mass_fraction == "drop":
        keep = ~(zero_o | zero_fe)
    else:
        if not zero_floor_mass_fraction > 0:
            raise SimBridgeConfigError(
                "abundances.zero_floor_mass_fraction must be > 0 when zero_mass_fraction is "
                f"'floor' (got {zero_floor_mass_fraction})")
        x_o[zero_o] = zero_floor_mass_fraction
        x_fe[zero_fe] = zero_floor_mass_fraction
    sun = SOLAR_MASS_FRACTIONS
    feh = np.log10(x_fe[keep] / x_h[keep]) - np.log10(sun["Fe"] / sun["H"])
    ofe = np.log10(x_o[keep] / x_fe[keep]) - np.log10(sun["O"] / sun["Fe"])
    return StarAbundances(feh=feh, ofe=ofe, mass_msun=mass[keep], n_zero_ox=int(zero_o.sum()),
                          n_zero_fe=int(zero_fe.sum()), n_dropped=int((~keep).sum()))


def global_range(values: NDArray, percentiles: Sequence[float]) -> tuple[float, float]:
    """(lo, hi) percentiles (in percent) of all kept stars' values."""
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64), list(percentiles))
    if not hi > lo:
        raise SimBridgeInputError(
            f"the kept stars span no range in the abundance plane ({lo} to {hi})",
            fix="check the mass fractions of the snapshots, or widen "
                "abundances.percentile_range")
    return float(lo), float(hi)


def histogram_edges(lo: float, hi: float, n_bins: int) -> NDArray:
    """n_bins + 1 equally spaced bin edges from lo to hi."""
    return np.linspace(lo, hi, n_bins + 1)


def abundance_histogram(
    feh: NDArray, ofe: NDArray, weights: NDArray | None, feh_edges: NDArray, ofe_edges: NDArray
) -> NDArray:
    """2D histogram indexed [ofe_bin, feh_bin] (image rows are [O/Fe], columns [Fe/H]).

    Stars outside the edges are left out; the last bin includes its upper edge (numpy).
    """
    hist, _, _ = np.histogram2d(ofe, feh, bins=[ofe_edges, feh_edges], weights=weights)
    return hist


# ----------------------------------------------------------------------------------------------
# The extraction stage: read snapshots (batches), then one set of histograms over a global range
# ----------------------------------------------------------------------------------------------

#: Columns of the building-block table (one row per usable snapshot).
BLOCK_COLUMNS = ("block", "galaxy", "snapshot", "step", "path", "stellar_mass_msun",
                 "dm_mass_msun", "infall_time_gyr", "redshift", "n_star", "n_zero_ox",
                 "n_zero_fe", "n_dropped")
ERROR_COLUMNS = ("galaxy", "snapshot", "path", "reason", "detail")


def read_batch(snapshots: Sequence[dict[str, Any]], settings: dict[str, Any], out_h5: str | Path,
               out_errors: str | Path) -> None:
    """Read one batch of snapshots with pynbody; write their stars (ragged) and an error table.

    ``snapshots``: dicts with galaxy, snapshot (file name), step and path.
    Snapshots that cannot be used land in the error table with the reason.
    """
    from simbridge.sims.nihao import SnapshotProblem, read_building_block

    ab = settings["abundances"]
    rows, errors, stars = [], [], {"feh": [], "ofe": [], "mass_msun": []}
    for snap in snapshots:
        try:
            block = read_building_block(snap["path"], settings["nihao"]["halo_number"])
        except SnapshotProblem as problem:
            errors.append({"galaxy": snap["galaxy"], "snapshot": snap["snapshot"],
                           "path": str(snap["path"]), "reason": problem.reason,
                           "detail": problem.detail})
            log.info("%s: %s (%s)", snap["snapshot"], problem.reason, problem.detail)
            continue
        ratios = abundance_ratios(block.ox_mass_frac, block.fe_mass_frac, block.metals,
                                  block.star_mass_msun, ab["zero_mass_fraction"],
                                  ab["zero_floor_mass_fraction"])
        if block.stellar_mass_msun > ab["stellar_mass_max_msun"]:
            errors.append({"galaxy": snap["galaxy"], "snapshot": snap["snapshot"],
                           "path": str(snap["path"]), "reason": "above the mass limit",
                           "detail": f"stellar mass {block.stellar_mass_msun:.3e} Msun > "
                                     f"abundances.stellar_mass_max_msun "
                                     f"{ab['stellar_mass_max_msun']:.3e}"})
            continue
        if ratios.feh.size == 0:
            errors.append({"galaxy": snap["galaxy"], "snapshot": snap["snapshot"],
                           "path": str(snap["path"]), "reason": "no stars with abundances",
                           "detail": f"all {block.n_star} stars have a zero O or Fe mass "
                                     "fraction"})
            continue
        rows.append({"galaxy": snap["galaxy"], "snapshot": snap["snapshot"],
                     "step": int(snap["step"]), "path": str(snap["path"]),
                     "stellar_mass_msun": block.stellar_mass_msun,
                     "dm_mass_msun": block.dm_mass_msun, "infall_time_gyr": block.time_gyr,
                     "redshift": block.redshift, "n_star": ratios.feh.size,
                     "n_zero_ox": ratios.n_zero_ox, "n_zero_fe": ratios.n_zero_fe,
                     "n_dropped": ratios.n_dropped})
        for key in stars:
            stars[key].append(getattr(ratios, key))
    table = pd.DataFrame(rows, columns=[c for c in BLOCK_COLUMNS if c != "block"])
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        counts = np.array([len(a) for a in stars["feh"]], dtype=np.int64)
        h5["star_offset"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for key, unit in (("feh", "dex"), ("ofe", "dex"), ("mass_msun", "Msun")):
            h5[key] = np.concatenate(stars[key]) if stars[key] else np.zeros(0)
            h5[key].attrs["units"] = unit
        h5.attrs["blocks_json"] = table.to_json(orient="records")
    with atomic_output(out_errors) as tmp:
        pd.DataFrame(errors, columns=list(ERROR_COLUMNS)).to_csv(tmp, index=False)


def _read_batch_file(path: str | Path) -> tuple[pd.DataFrame, list[dict[str, NDArray]]]:
    with h5py.File(path, "r") as h5:
        table = pd.read_json(StringIO(h5.attrs["blocks_json"]), orient="records")
        off = h5["star_offset"][...]
        arrays = {k: h5[k][...] for k in ("feh", "ofe", "mass_msun")}
    stars = [{k: v[off[i]:off[i + 1]] for k, v in arrays.items()} for i in range(len(off) - 1)]
    return table, stars


def build_histograms(batch_files: Sequence[str | Path], error_files: Sequence[str | Path],
                     config: dict[str, Any], out_h5: str | Path, out_blocks: str | Path,
                     out_errors: str | Path) -> dict[str, Any]:
    """One global range and one 64x64 (config) histogram per building block.

    Writes the histogram file (histograms, edges with units, stars, block parameters,
    provenance), the building-block table and the merged error table. Returns a summary.
    """
    ab = config["abundances"]
    if ab["weighting"] not in WEIGHTINGS:
        raise SimBridgeConfigError(f"abundances.weighting must be one of {WEIGHTINGS}")
    tables, stars = [], []
    for path in batch_files:
        table, batch_stars = _read_batch_file(path)
        tables.append(table)
        stars.extend(batch_stars)
    blocks = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    errors = pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""])
                        for p in error_files], ignore_index=True)
    if blocks.empty:
        raise SimBridgeInputError(
            "no snapshot gave a usable building block (see the error table for why)",
            path=out_errors, fix="point nihao.base_path at NIHAO snapshots with AHF halos and "
                                 "stars below abundances.stellar_mass_max_msun")
    blocks.insert(0, "block", np.arange(len(blocks)))
    all_feh = np.concatenate([s["feh"] for s in stars])
    all_ofe = np.concatenate([s["ofe"] for s in stars])
    pct = ab["percentile_range"]
    feh_edges = histogram_edges(*global_range(all_feh, pct), ab["n_bins"])
    ofe_edges = histogram_edges(*global_range(all_ofe, pct), ab["n_bins"])
    n = ab["n_bins"]
    hists = np.zeros((len(blocks), n, n), dtype=np.float32)
    outside = np.zeros(len(blocks), dtype=np.int64)
    for i, s in enumerate(stars):
        w = s["mass_msun"] if ab["weighting"] == "mass" else None
        hists[i] = abundance_histogram(s["feh"], s["ofe"], w, feh_edges, ofe_edges)
        inside = ((s["feh"] >= feh_edges[0]) & (s["feh"] <= feh_edges[-1])
                  & (s["ofe"] >= ofe_edges[0]) & (s["ofe"] <= ofe_edges[-1]))
        outside[i] = int((~inside).sum())
    blocks["n_star_outside_range"] = outside
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        d = h5.create_dataset("histograms", data=hists, chunks=(1, n, n), compression="gzip")
        d.attrs["units"] = HISTOGRAM_UNITS[ab["weighting"]]
        d.attrs["weighting"] = ab["weighting"]
        d.attrs["axes"] = ["[O/Fe] bin (rows)", "[Fe/H] bin (columns)"]
        for name, edges in (("feh_edges", feh_edges), ("ofe_edges", ofe_edges)):
            h5[name] = edges
            h5[name].attrs["units"] = "dex"
        for col, unit in (("stellar_mass_msun", "Msun"), ("dm_mass_msun", "Msun"),
                          ("infall_time_gyr", "Gyr")):
            h5[col] = blocks[col].to_numpy(np.float64)
            h5[col].attrs["units"] = unit
        h5["galaxy"] = blocks["galaxy"].to_numpy().astype("S")
        h5["snapshot"] = blocks["snapshot"].to_numpy().astype("S")
        h5["star_offset"] = np.concatenate([[0], np.cumsum([len(s["feh"]) for s in stars])])
        for key, unit in (("feh", "dex"), ("ofe", "dex"), ("mass_msun", "Msun")):
            h5[f"stars/{key}"] = np.concatenate([s[key] for s in stars])
            h5[f"stars/{key}"].attrs["units"] = unit
        h5.attrs["percentile_range"] = list(pct)
        h5.attrs["solar_mass_fractions"] = [SOLAR_MASS_FRACTIONS[k] for k in ("H", "O", "Fe")]
        h5.attrs["solar_table"] = "Asplund et al. 2009 (X_H, X_O, X_Fe)"
        write_provenance(h5, {"nihao": config["nihao"], "abundances": ab}, config["seed"],
                         list(batch_files))
    with atomic_output(out_blocks) as tmp:
        blocks.to_csv(tmp, index=False)
    with atomic_output(out_errors) as tmp:
        errors.to_csv(tmp, index=False)
    return {"n_blocks": len(blocks), "n_errors": len(errors),
            "feh_range": [feh_edges[0], feh_edges[-1]],
            "ofe_range": [ofe_edges[0], ofe_edges[-1]]}

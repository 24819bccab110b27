"""Assemble the training-ready dataset: one HDF5 file per split and the galaxy manifest.

Samples of a split are ordered by snapshot (config order), then subhalo ID, then view. The map
datasets are chunked one sample per chunk, so the chunks are copied from the batch files as
they are (already compressed) instead of being decompressed and compressed again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from simbridge.errors import SimBridgeInputError, rebuild_fix
from simbridge.extract.tng_maps import create_sample_datasets
from simbridge.io import atomic_output, read_table, write_provenance
from simbridge.paths import SPLITS
from simbridge.sims.tng import open_hdf5

log = logging.getLogger(__name__)

LINEAGE_FIELD = {"lineage_group": ("i8", "lineage group: one physical galaxy across snapshots")}
MAP_DATASETS = ("conditions", "exsitu_fraction_map", "particle_count", "galaxy_mask", "rotation")
DATASET_MANIFEST_COLUMNS = [
    "simulation", "snapshot", "redshift", "subhalo_id", "status", "reason", "split",
    "lineage_group", "stellar_mass_msun", "half_mass_radius_kpc", "exsitu_fraction_global",
    "exsitu_bin", "n_star_particles", "n_wind_particles", "n_views", "first_sample", "batch",
]


def _snapshot_sorted(df: pd.DataFrame, snapshots: Sequence[int], *first: str) -> pd.DataFrame:
    """Rows sorted by ``first`` columns, then snapshot in config order, then subhalo ID."""
    order = {int(s): i for i, s in enumerate(snapshots)}
    key = df["snapshot"].map(order)
    return (df.assign(_snap_order=key)
              .sort_values([*first, "_snap_order", "subhalo_id"], kind="stable")
              .drop(columns="_snap_order").reset_index(drop=True))


def dataset_layout(
    batch_csvs: Sequence[str | Path], splits: pd.DataFrame, snapshots: Sequence[int]
) -> pd.DataFrame:
    """Where every extracted galaxy's samples are: batch file, first sample there, split file
    and first sample there (``first_sample``)."""
    frames = []
    for b, path in enumerate(batch_csvs):
        df = read_batch_table(path)
        df = df[df["status"] == "extracted"].copy()
        df["batch_file"] = b
        df["batch_first"] = df["first_sample"]
        frames.append(df.drop(columns="first_sample"))
    done = pd.concat(frames, ignore_index=True)
    done = done.merge(splits[["snapshot", "subhalo_id", "lineage_group", "split"]],
                      on=["snapshot", "subhalo_id"], how="left", validate="one_to_one")
    if done["split"].isna().any():
        bad = done[done["split"].isna()].iloc[0]
        raise ValueError(f"extracted galaxy {int(bad.subhalo_id)} of snapshot "
                         f"{int(bad.snapshot)} has no split: the split table is stale")
    done["split_order"] = done["split"].map({s: i for i, s in enumerate(SPLITS)})
    done = _snapshot_sorted(done, snapshots, "split_order")
    done["first_sample"] = done.groupby("split")["n_views"].cumsum() - done["n_views"]
    return done


def read_batch_table(path: str | Path) -> pd.DataFrame:
    """The galaxy table of one maps batch; a corrupt one gets the rerun fix, not re-download."""
    try:
        df = read_table(path)
        missing = {"snapshot", "subhalo_id", "status", "n_views", "first_sample"} - set(df)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SimBridgeInputError(f"maps batch table cannot be read ({err})", path,
                                  rebuild_fix(path, "extract_maps")) from None
    if missing:
        raise SimBridgeInputError(f"maps batch table lacks columns {sorted(missing)}", path,
                                  rebuild_fix(path, "extract_maps"))
    return df


def build_split(
    split: str, batch_h5: Sequence[str | Path], batch_csvs: Sequence[str | Path],
    splits_csv: str | Path, config: dict[str, Any], out_h5: str | Path, progress: bool = True,
) -> int:
    """Write the HDF5 file of one split from the batch files; returns its number of samples."""
    layout = dataset_layout(batch_csvs, pd.read_csv(splits_csv), config["tng"]["snapshots"])
    rows = layout[layout["split"] == split]
    n = int(rows["n_views"].sum())
    npix = config["maps"]["npix"]
    inputs: set[str] = set()
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as out:
        create_sample_datasets(out, n, npix, LINEAGE_FIELD)
        one_d = [name for name in out if out[name].ndim == 1 and name != "lineage_group"]
        extra_maps, extra_1d = create_extra_datasets(batch_h5, out, n)
        one_d += extra_1d
        for b, grp in tqdm(rows.groupby("batch_file", sort=True), desc=f"{split}: copying",
                           unit="batch", disable=not progress):
            batch_file = batch_h5[int(b)]
            fix = rebuild_fix(batch_file, "extract_maps")
            with open_hdf5(batch_file, "maps batch", fix=fix) as src:
                src_idx = np.concatenate([np.arange(f, f + v) for f, v in
                                          zip(grp["batch_first"], grp["n_views"], strict=True)])
                dst_idx = np.concatenate([np.arange(f, f + v) for f, v in
                                          zip(grp["first_sample"], grp["n_views"], strict=True)])
                try:
                    inputs.update(str(s) for s in src["provenance"].attrs["input_files"])
                    for name in (*MAP_DATASETS, *extra_maps):
                        copy_sample_chunks(src[name], out[name], src_idx, dst_idx)
                    for name in one_d:
                        out[name][dst_idx] = src[name][...][src_idx]
                except (OSError, KeyError, ValueError) as err:
                    raise SimBridgeInputError(f"maps batch cannot be read ({err})", batch_file,
                                              fix) from None
                out["lineage_group"][dst_idx] = np.repeat(grp["lineage_group"].to_numpy(),
                                                          grp["n_views"].to_numpy())
        out.attrs["split"] = split
        out.attrs["n_samples"] = n
        out.attrs["n_galaxies"] = len(rows)
        out.attrs["fov_definition"] = (
            "maps span [-f, +f] * stellar half-mass radius on both axes, "
            f"f = maps.fov_half_mass_radii = {config['maps']['fov_half_mass_radii']}"
        )
        out.attrs["pixel_convention"] = (
            "array index [iy, ix]: row = image y (rotation row 1), column = image x (rotation "
            "row 0); los velocity > 0 is receding along rotation row 2"
        )
        write_provenance(out, config, config["seed"], sorted(inputs))
    log.info("%s: %d galaxies, %d samples", split, len(rows), n)
    return n


def create_extra_datasets(batch_h5: Sequence[str | Path], out: h5py.File, n: int
                          ) -> tuple[list[str], list[str]]:
    """Per-sample datasets of the batch files beyond the ideal layout (e.g. the IFU-like
    dataset's ideal maps, errors and bin maps), created in ``out`` like the batch's; attributes
    of the batch's datasets that ``out`` lacks are copied. Returns (map names, 1-d names);
    batch files of the ideal layout give none and change nothing."""
    if not batch_h5:
        return [], []
    maps, one_d = [], []
    with open_hdf5(batch_h5[0], "maps batch", fix=rebuild_fix(batch_h5[0], "extract_maps")) as src:
        for name, ds in src.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            if name not in out:
                rest = ds.shape[1:]
                out.create_dataset(name, shape=(n, *rest), dtype=ds.dtype,
                                   chunks=(1, *rest) if n and rest else None,
                                   compression="lzf" if n and rest else None, track_times=False)
                (maps if rest else one_d).append(name)
            for key, value in ds.attrs.items():
                if key not in out[name].attrs:
                    out[name].attrs[key] = value
    return maps, one_d


def copy_sample_chunks(src: h5py.Dataset, dst: h5py.Dataset, src_idx: np.ndarray,
                 dst_idx: np.ndarray) -> None:
    """Copy samples between datasets chunked one sample per chunk, raw chunk by raw chunk."""
    same_layout = (src.chunks is not None and src.chunks == dst.chunks
                   and src.chunks[0] == 1 and src.compression == dst.compression)
    if not same_layout:
        dst[dst_idx] = src[...][src_idx]
        return
    rest = (0,) * (src.ndim - 1)
    for i, j in zip(src_idx, dst_idx, strict=True):
        mask, data = src.id.read_direct_chunk((int(i), *rest))
        dst.id.write_direct_chunk((int(j), *rest), data, mask)


def write_dataset_manifest(
    batch_csvs: Sequence[str | Path], catalog_csvs: Sequence[str | Path],
    plan_csv: str | Path, splits_csv: str | Path, config: dict[str, Any],
    out_csv: str | Path,
) -> pd.DataFrame:
    """One row per selected subhalo: split, lineage group, views, first sample in its split
    file, and for every galaxy left out the reason."""
    splits = pd.read_csv(splits_csv)
    layout = dataset_layout(batch_csvs, splits, config["tng"]["snapshots"])
    rows = pd.concat([read_table(p) for p in batch_csvs], ignore_index=True)
    rows = rows.drop(columns="first_sample").merge(
        layout[["snapshot", "subhalo_id", "first_sample"]], on=["snapshot", "subhalo_id"],
        how="left")
    for path in catalog_csvs:  # galaxies skipped already at selection
        cat = read_table(path)
        cat = cat[cat["status"] == "skipped"]
        rows = pd.concat([rows, pd.DataFrame({
            "simulation": config["tng"]["simulation_name"], "snapshot": cat["snapshot"],
            "redshift": cat["redshift"], "subhalo_id": cat["subhalo_id"], "status": "skipped",
            "reason": cat["reason"], "stellar_mass_msun": cat["stellar_mass_msun"],
            "half_mass_radius_kpc": cat["half_mass_radius_kpc"],
            "exsitu_fraction_global": np.nan, "n_star_particles": -1, "n_wind_particles": -1,
            "n_views": 0, "batch": -1,
        })], ignore_index=True)
    plan = read_table(plan_csv)[["snapshot", "subhalo_id", "exsitu_bin"]]
    rows = rows.merge(plan, on=["snapshot", "subhalo_id"], how="left")
    rows = rows.merge(splits[["snapshot", "subhalo_id", "lineage_group", "split"]],
                      on=["snapshot", "subhalo_id"], how="left")
    extracted = rows["status"] == "extracted"
    rows.loc[~extracted, "split"] = ""
    rows["lineage_group"] = rows["lineage_group"].where(extracted, -1).fillna(-1).astype(np.int64)
    rows["exsitu_bin"] = rows["exsitu_bin"].fillna(-1).astype(np.int64)
    rows["first_sample"] = rows["first_sample"].where(extracted, -1).fillna(-1).astype(np.int64)
    manifest = _snapshot_sorted(rows, config["tng"]["snapshots"])[DATASET_MANIFEST_COLUMNS]
    with atomic_output(out_csv) as tmp:
        manifest.to_csv(tmp, index=False)
    return manifest


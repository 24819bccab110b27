"""IFU-like maps of TNG galaxies, one batch per job (the ``extract_ifu_maps`` rule).

Reads the batch's star particles as :func:`simbridge.extract.tng_maps.extract_batch` does (with
``GFM_StellarPhotometrics`` besides), makes the ideal maps of every view with the same function
(so they equal the ideal dataset's), and observes every view with
:func:`simbridge.extract.ifu.observe_view`. The batch file has the ideal dataset's layout, with
``conditions`` and ``galaxy_mask`` the IFU-like ones, ``exsitu_fraction_map`` the ideal target,
and beside them (:data:`IFU_MAP_FIELDS`, :data:`IFU_SAMPLE_FIELDS`) the ideal maps, the error
maps, the Voronoi bin map, the bins' S/N and the r-band surface brightness.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from simbridge.errors import SimBridgeInputError
from simbridge.extract import ifu
from simbridge.extract.maps import MAP_CHANNELS, MAP_UNITS
from simbridge.extract.tng_maps import (
    MANIFEST_COLUMNS,
    GalaxySkipped,
    _input_files,
    batch_galaxies,
    create_sample_datasets,
    galaxy_maps_from_frame,
    galaxy_rotations,
    iter_batch_particles,
    star_frame,
)
from simbridge.io import atomic_output, read_table, write_provenance
from simbridge.sims import tng

log = logging.getLogger(__name__)

IFU_STAR_FIELDS: tuple[str, ...] = (*tng.STAR_FIELDS, "GFM_StellarPhotometrics")
#: Stream label of the measurement-noise draws: rng = default_rng([seed, snap, id, view, it]).
NOISE_STREAM = 1313
ERROR_UNITS = ["dex", "km s^-1", "km s^-1", "dex", "dex"]
#: Extra per-sample map datasets: name -> (shape suffix kind, dtype, units).
IFU_MAP_FIELDS: dict[str, tuple[str, str, str]] = {
    "ideal_conditions": ("channels", "f4", "see channel_units (mass-weighted, no PSF, no noise)"),
    "condition_errors": ("channels", "f4", "1-sigma errors, see channel_units"),
    "ideal_galaxy_mask": ("map", "u1", "1 where the ideal map holds enough particles"),
    "footprint_mask": ("map", "u1", "1 where the pixel centre is inside the IFU footprint"),
    "voronoi_bin": ("map", "i4", "Voronoi bin of the spaxel at the pixel centre, -1 none"),
    "bin_snr": ("map", "f4", "r-band S/N of that Voronoi bin (0: none)"),
    "r_surface_brightness": ("map", "f4", "r-band AB mag arcsec^-2 after the PSF (99: no light)"),
}
IFU_SAMPLE_FIELDS: dict[str, tuple[str, str]] = {
    "effective_radius_kpc": ("f8", "projected r-band half-light radius of the view, kpc"),
    "observed_redshift": ("f8", "redshift the galaxy is observed at (ifu.redshift)"),
    "kpc_per_arcsec": ("f8", "proper kpc per arcsec at observed_redshift"),
    "n_voronoi_bins": ("i4", "Voronoi bins reaching the target S/N"),
    "n_spaxels_binned": ("i4", "spaxels in those bins"),
}


def ifu_settings(config: dict[str, Any]) -> ifu.IfuSettings:
    """The IfuSettings of a (validated) config."""
    return ifu.IfuSettings.from_config(config["ifu"])


def ifu_galaxy(stars: dict[str, np.ndarray], insitu: np.ndarray, header: tng.SnapshotHeader,
               centre_ckpc_h: np.ndarray, systemic_velocity_kms: np.ndarray,
               half_mass_radius_kpc: float, rotations: np.ndarray, config: dict[str, Any],
               subhalo_id: int) -> tuple[Any, list[ifu.IfuView]]:
    """Ideal maps (GalaxyResult) and the IFU views of one galaxy; GalaxySkipped if unusable."""
    maps_cfg = config["maps"]
    frame = star_frame(stars, header, centre_ckpc_h, systemic_velocity_kms)
    ideal = galaxy_maps_from_frame(frame, stars, insitu, header, half_mass_radius_kpc,
                                   rotations, maps_cfg)
    settings = ifu_settings(config)
    phot = np.asarray(stars["GFM_StellarPhotometrics"])[frame.is_star]
    if not np.isfinite(phot[:, ifu.R_BAND_INDEX]).all():
        raise GalaxySkipped("non-finite values in PartType4/GFM_StellarPhotometrics (r band)")
    lum = ifu.r_band_luminosity_lsun(phot)
    if lum.sum() <= 0:
        raise GalaxySkipped("no r-band light (GFM_StellarPhotometrics r >= 90 for every star)")
    cosmo = (settings.redshift, header.hubble_param, header.omega_matter, header.omega_lambda)
    scale, dist_mod = ifu.angular_scale_kpc_per_arcsec(*cosmo), ifu.distance_modulus(*cosmo)
    views = []
    for k, rot in enumerate(rotations):
        rng = np.random.default_rng([int(config["seed"]), int(header.snapshot), int(subhalo_id),
                                     k, NOISE_STREAM])
        x, y, v = frame.pos_kpc @ rot[0], frame.pos_kpc @ rot[1], frame.vel_kms @ rot[2]
        try:
            view = ifu.observe_view(x, y, v, frame.mass_msun, frame.age_gyr, frame.metallicity,
                                    lum, ideal.particle_count[k], ideal.half_width_kpc,
                                    maps_cfg["min_particles_per_pixel"], scale, dist_mod,
                                    settings, rng)
        except ValueError as err:
            raise GalaxySkipped(f"IFU view {k}: {err}") from None
        if not view.galaxy_mask.any():
            raise GalaxySkipped(
                f"IFU view {k}: no pixel reaches the target S/N {settings.target_snr:g} inside "
                f"the footprint (ifu.depth, ifu.target_snr)")
        views.append(view)
    return ideal, views


def extract_ifu_batch(
    base_path: str | Path, snapshot: int, catalog_csv: str | Path, batch: int,
    config: dict[str, Any], out_h5: str | Path, out_csv: str | Path, plan_csv: str | Path,
    progress: bool = True,
) -> pd.DataFrame:
    """IFU-like maps of every galaxy in one batch (views from the balancing plan, as the ideal
    maps); writes the batch file ``out_h5`` and its galaxy table ``out_csv``."""
    header = tng.read_snapshot_header(base_path, snapshot)
    galaxies = batch_galaxies(catalog_csv, batch)
    plan = read_table(plan_csv)
    plan = plan[plan["snapshot"] == snapshot].set_index("subhalo_id")
    missing = sorted(set(galaxies["subhalo_id"]) - set(plan.index))
    if missing:
        raise SimBridgeInputError(
            f"the balancing plan has no row for subhalos {missing[:5]} of snapshot {snapshot}",
            plan_csv, "rerun the workflow (snakemake --rerun-incomplete) so that it is rebuilt")
    planned = plan.loc[galaxies["subhalo_id"]]
    galaxies["n_views"] = planned["n_views"].to_numpy(dtype=np.int64)
    status = planned["status"].to_numpy()
    reasons = {int(i): str(r) for i, r in
               zip(np.flatnonzero(status != "measured"),
                   planned["reason"].to_numpy()[status != "measured"], strict=True)}
    todo = galaxies.drop(index=list(reasons)).reset_index()
    results: dict[int, tuple[Any, list[ifu.IfuView]]] = {}
    particles = iter_batch_particles(base_path, header, todo,
                                     config["tng"]["max_read_gap_particles"], IFU_STAR_FIELDS)
    for i, stars, insitu in tqdm(particles, total=len(todo), disable=not progress,
                                 desc=f"snapshot {snapshot:03d}: IFU maps", unit="galaxy",
                                 mininterval=2.0):
        row = todo.iloc[i]
        gid = int(row["index"])
        try:
            results[gid] = ifu_galaxy(
                stars, insitu, header,
                np.array([row.pos_x_ckpc_h, row.pos_y_ckpc_h, row.pos_z_ckpc_h]),
                np.array([row.vel_x_kms, row.vel_y_kms, row.vel_z_kms]),
                float(row.half_mass_radius_kpc),
                galaxy_rotations(config["seed"], snapshot, int(row.subhalo_id),
                                 int(row.n_views)),
                config, int(row.subhalo_id))
        except GalaxySkipped as skip:
            reasons[gid] = str(skip)
            log.warning("snapshot %d subhalo %d skipped: %s", snapshot, row.subhalo_id, skip)

    settings = ifu_settings(config)
    cosmo = (settings.redshift, header.hubble_param, header.omega_matter, header.omega_lambda)
    scale = ifu.angular_scale_kpc_per_arcsec(*cosmo)
    rows, sample = [], 0
    for i, row in galaxies.iterrows():
        res = results.get(int(i))
        ideal = None if res is None else res[0]
        rows.append({
            "simulation": config["tng"]["simulation_name"], "snapshot": int(snapshot),
            "redshift": header.redshift, "subhalo_id": int(row.subhalo_id),
            "status": "skipped" if res is None else "extracted",
            "reason": reasons.get(int(i), ""), "stellar_mass_msun": row.stellar_mass_msun,
            "half_mass_radius_kpc": row.half_mass_radius_kpc,
            "exsitu_fraction_global": np.nan if ideal is None else ideal.exsitu_fraction_global,
            "n_star_particles": -1 if ideal is None else ideal.n_star_particles,
            "n_wind_particles": -1 if ideal is None else ideal.n_wind_particles,
            "n_views": 0 if ideal is None else len(ideal.rotations),
            "first_sample": -1 if ideal is None else sample, "batch": int(batch),
        })
        if ideal is not None:
            sample += len(ideal.rotations)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    npix = config["maps"]["npix"]
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        create_sample_datasets(h5, sample, npix, IFU_SAMPLE_FIELDS)
        create_ifu_datasets(h5, sample, npix)
        k = 0
        for i in range(len(galaxies)):
            if i not in results:
                continue
            ideal, views = results[i]
            n = len(views)
            sl = slice(k, k + n)
            row = galaxies.iloc[i]
            h5["conditions"][sl] = np.stack([v.conditions for v in views])
            h5["galaxy_mask"][sl] = np.stack([v.galaxy_mask for v in views])
            h5["exsitu_fraction_map"][sl] = ideal.exsitu_fraction
            h5["particle_count"][sl] = ideal.particle_count
            h5["rotation"][sl] = ideal.rotations
            h5["ideal_conditions"][sl] = ideal.conditions
            h5["ideal_galaxy_mask"][sl] = ideal.galaxy_mask
            for name, attr in (("condition_errors", "condition_errors"),
                               ("footprint_mask", "footprint_mask"),
                               ("voronoi_bin", "voronoi_bin"), ("bin_snr", "bin_snr"),
                               ("r_surface_brightness", "surface_brightness")):
                h5[name][sl] = np.stack([getattr(v, attr) for v in views])
            per_sample = {
                "subhalo_id": row.subhalo_id, "snapshot": snapshot, "redshift": header.redshift,
                "view_index": np.arange(n), "pixel_size_kpc": ideal.pixel_size_kpc,
                "half_width_kpc": ideal.half_width_kpc,
                "stellar_mass_msun": row.stellar_mass_msun,
                "half_mass_radius_kpc": row.half_mass_radius_kpc,
                "exsitu_fraction_global": ideal.exsitu_fraction_global,
                "effective_radius_kpc": [v.effective_radius_kpc for v in views],
                "observed_redshift": settings.redshift, "kpc_per_arcsec": scale,
                "n_voronoi_bins": [v.n_bins for v in views],
                "n_spaxels_binned": [v.n_spaxels_binned for v in views],
            }
            for name, value in per_sample.items():
                h5[name][sl] = value
            k += n
        h5.attrs["n_galaxies"] = len(results)
        write_provenance(h5, config, config["seed"],
                         _input_files(base_path, header,
                                      tng.stellar_assembly_path(base_path, snapshot)))
    with atomic_output(out_csv) as tmp:
        manifest.to_csv(tmp, index=False)
    log.info("snapshot %d batch %d: %d galaxies observed, %d skipped", snapshot, batch,
             len(results), len(galaxies) - len(results))
    return manifest


def create_ifu_datasets(h5: h5py.File, n: int, npix: int) -> None:
    """The IFU datasets beside the ideal layout (chunked one sample per chunk), with the
    weighting of every condition map as attributes."""
    for name, (kind, dtype, unit) in IFU_MAP_FIELDS.items():
        shape = (len(MAP_CHANNELS), npix, npix) if kind == "channels" else (npix, npix)
        ds = h5.create_dataset(name, shape=(n, *shape), dtype=dtype,
                               chunks=(1, *shape) if n else None,
                               compression="lzf" if n else None, track_times=False)
        ds.attrs["units"] = unit
    h5["ideal_conditions"].attrs["channels"] = list(MAP_CHANNELS)
    h5["ideal_conditions"].attrs["channel_units"] = [MAP_UNITS[c] for c in MAP_CHANNELS]
    h5["ideal_conditions"].attrs["weighting"] = list(ifu.IDEAL_WEIGHTING)
    h5["condition_errors"].attrs["channels"] = list(MAP_CHANNELS)
    h5["condition_errors"].attrs["channel_units"] = ERROR_UNITS
    h5["conditions"].attrs["weighting"] = list(ifu.IFU_WEIGHTING)
    h5["galaxy_mask"].attrs["definition"] = (
        "1 where valid Voronoi bins (inside the footprint, S/N >= target) cover at least "
        "ifu.min_covered_fraction of the pixel and its centre, and the ideal map holds at "
        "least maps.min_particles_per_pixel particles (the target is defined)")

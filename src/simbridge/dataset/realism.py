"""Image sets of the realism branch: mocks of a TNG-layout simulation, real SDSS cutouts,
Sersic archetypes and empty-sky controls, each an HDF5 file with a manifest CSV beside it.

Every set file holds ``images_nmgy`` (N, cutout, cutout; sky-subtracted nanomaggies, noise
included), ``model_input`` (N, m, m; the shared asinh stretch in [-1, 1]) and
``psf_fwhm_arcsec`` (N,); its manifest has one row per candidate galaxy (``row`` = index into
the file, -1 with the reason for a skip) with stellar mass, half-light radius and Sersic fit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from simbridge import units
from simbridge.errors import SimBridgeInputError, rebuild_fix
from simbridge.extract import mock_images as mi
from simbridge.extract import sersic_fit as sf
from simbridge.extract.tng_maps import read_ranges, select_galaxies
from simbridge.io import atomic_output, open_hdf5, read_table, write_provenance
from simbridge.logs import progress_logger
from simbridge.models.training import derive_seed
from simbridge.sims import tng

log = logging.getLogger(__name__)
progress = progress_logger("realism")

PARTICLE_FIELDS = ["Coordinates", "GFM_StellarFormationTime", "GFM_StellarPhotometrics"]
SPLITS = ("train", "validation", "test")


# --------------------------------------------------------------------------- writing

def _write_set(out_h5: str | Path, out_csv: str | Path, images: list[np.ndarray],
               fwhm: list[float], rows: list[dict], settings: dict[str, Any], config: dict,
               seed: int, inputs: Sequence[str | Path], what: str) -> pd.DataFrame:
    n = int(settings["cutout_npix"])
    stack = np.stack(images).astype(np.float32) if images else np.zeros((0, n, n), np.float32)
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as fh:
        d = fh.create_dataset("images_nmgy", data=stack, chunks=(1, n, n) if len(stack) else None)
        d.attrs["unit"] = "nanomaggy per pixel (sky-subtracted, noise included)"
        d.attrs["pixel_scale_arcsec"] = float(settings["pixel_scale_arcsec"])
        m = mi.model_input(stack, settings) if len(stack) else np.zeros((0, 1, 1), np.float32)
        d = fh.create_dataset("model_input", data=m)
        d.attrs["unit"] = "asinh-stretched flux in [-1, 1] (realism.mocks.stretch)"
        d.attrs["resample"] = str(settings["resample"])
        d = fh.create_dataset("psf_fwhm_arcsec", data=np.asarray(fwhm, dtype=np.float64))
        d.attrs["unit"] = "arcsec"
        fh.attrs["what"] = what
        fh.attrs["psf_profile"] = str(settings["psf"]["profile"])
        write_provenance(fh, config, seed, [str(p) for p in inputs])
    table = pd.DataFrame(rows)
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def _fit_row(image: np.ndarray, fwhm: float, settings: dict[str, Any]) -> dict[str, Any]:
    """Sersic fit of one noisy cutout with its PSF (segmentation above the sky noise)."""
    fit = sf.fit_sersic(image, mi.psf_image(settings, fwhm), mi.noise_sigma_nmgy(settings, 0.0),
                        float(settings["gain_e_per_dn"]) / float(settings["nmgy_per_dn"]))
    row = fit.as_row()
    scale = float(settings["pixel_scale_arcsec"])
    row["sersic_rhalf_arcsec"] = row["sersic_rhalf_pix"] * scale
    return row


def assign_splits(n: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Seeded split of n galaxies (train/validation/test), each non-empty when n >= 3."""
    order = np.random.default_rng(derive_seed(seed, "realism-splits")).permutation(n)
    n_val = max(1, round(fractions["validation"] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions["test"] * n)) if n >= 3 else 0
    out = np.full(n, "train", dtype=object)
    out[order[:n_val]] = "validation"
    out[order[n_val:n_val + n_test]] = "test"
    return out


def _sky_cutouts(sky_dir: str | Path | None, settings: dict[str, Any]) -> np.ndarray | None:
    if sky_dir is None:
        return None
    return mi.read_cutout_directory(sky_dir, settings)[1]


def _pick_sky(skies: np.ndarray | None, seed: int) -> np.ndarray | None:
    if skies is None:
        return None
    return skies[np.random.default_rng(seed).integers(len(skies))]


# --------------------------------------------------------------------------- mocks of a TNG set

def build_mock_set(base_path: str | Path, snapshot: int, set_name: str, settings: dict[str, Any],
                   selection: dict[str, Any], fit: bool, seed: int, out_h5: str | Path,
                   out_csv: str | Path, config: dict, sky_dir: str | Path | None = None,
                   split_fractions: dict[str, float] | None = None) -> pd.DataFrame:
    """Mock cutouts of the galaxies of one snapshot above the mass cut (``selection``:
    stellar_mass_min_msun, max_galaxies). ``split_fractions``: also assign splits (the set that
    plays the observations)."""
    settings = mi.check_mock_settings(settings)
    header = tng.read_snapshot_header(base_path, snapshot)
    cat = select_galaxies(base_path, snapshot, float(selection["stellar_mass_min_msun"]))
    cat = cat[cat["status"] == "selected"].reset_index(drop=True)
    limit = selection.get("max_galaxies")
    if limit is not None and len(cat) > int(limit):
        keep = np.random.default_rng(derive_seed(seed, "realism-subset", set_name)).choice(
            len(cat), int(limit), replace=False)
        cat = cat.iloc[np.sort(keep)].reset_index(drop=True)
    if cat.empty:
        raise SimBridgeInputError(
            f"set {set_name!r}: no galaxy of snapshot {snapshot} above "
            f"{selection['stellar_mass_min_msun']:.3g} Msun", header.path,
            "lower realism.stellar_mass_min_msun or check the base_path")
    cosmo = mi.Cosmology(header.hubble_param, header.omega_matter)
    a, h, box = header.scale_factor, header.hubble_param, header.box_size_ckpc_h
    chunk_offsets = tng.read_chunk_offsets(base_path, header)
    skies = _sky_cutouts(sky_dir, settings)
    images, fwhm, rows = [], [], []
    offsets, lengths = cat["offset_part4"].to_numpy(), cat["n_part4"].to_numpy()
    results: dict[int, dict] = {}
    done = 0
    for start, stop, members in read_ranges(offsets, lengths, 200_000):
        stars = tng.load_star_range(base_path, header, chunk_offsets, start, stop - start,
                                    PARTICLE_FIELDS)
        for i in members:
            g = cat.iloc[int(i)]
            sl = slice(int(offsets[i]) - start, int(offsets[i] + lengths[i]) - start)
            centre = g[["pos_x_ckpc_h", "pos_y_ckpc_h", "pos_z_ckpc_h"]].to_numpy(np.float64)
            pos = units.comoving_ckpc_h_to_physical_kpc(
                units.periodic_offset(stars["Coordinates"][sl], centre, box), a, h)
            gseed = derive_seed(seed, "realism-mock", set_name, int(g["subhalo_id"]))
            row = {"set": set_name, "snapshot": int(snapshot), "subhalo_id": int(g["subhalo_id"]),
                   "stellar_mass_msun": float(g["stellar_mass_msun"]),
                   "half_mass_radius_kpc": float(g["half_mass_radius_kpc"])}
            try:
                mock = mi.mock_galaxy(pos, stars["GFM_StellarPhotometrics"][sl],
                                      stars["GFM_StellarFormationTime"][sl], settings, cosmo,
                                      gseed, _pick_sky(skies, derive_seed(gseed, "sky")))
            except SimBridgeInputError as err:
                results[int(i)] = {**row, "status": "skipped",
                                   "reason": str(err).splitlines()[0]}
                continue
            row.update(status="selected", reason="", psf_fwhm_arcsec=mock.psf_fwhm_arcsec,
                       total_flux_nmgy=mock.total_flux_nmgy,
                       r_apparent_mag=mi.NANOMAGGY_ZERO_POINT - 2.5 * np.log10(
                           mock.total_flux_nmgy),
                       flux_outside_fraction=mock.flux_outside_fraction,
                       half_light_radius_kpc=mock.half_light_radius_kpc,
                       half_light_radius_arcsec=mock.half_light_radius_arcsec,
                       n_luminous_particles=mock.n_luminous)
            if fit:
                row.update(_fit_row(mock.image_nmgy, mock.psf_fwhm_arcsec, settings))
                if not row["ok"]:
                    row.update(status="skipped", reason=f"Sersic fit: {row['reason']}")
            results[int(i)] = {**row, "_image": mock.image_nmgy}
            done += 1
            if done % 50 == 0:
                progress.info("set %s: %d/%d galaxies mocked", set_name, done, len(cat))
    for i in range(len(cat)):
        row = results[i]
        image = row.pop("_image", None)
        if row["status"] == "selected":
            row["row"] = len(images)
            images.append(image)
            fwhm.append(row["psf_fwhm_arcsec"])
        else:
            row["row"] = -1
        rows.append(row)
    table = pd.DataFrame(rows)
    if not images:
        raise SimBridgeInputError(
            f"set {set_name!r}: no galaxy could be mocked ({table['reason'].iloc[0]})",
            header.path, "check GFM_StellarPhotometrics of the snapshot")
    if split_fractions is not None:
        table["split"] = ""
        sel = table["row"].to_numpy() >= 0
        table.loc[sel, "split"] = assign_splits(int(sel.sum()), split_fractions, seed)
    rows = table.to_dict("records")
    out = _write_set(out_h5, out_csv, images, fwhm, rows, settings, config, seed,
                     tng.snapshot_archive_files(base_path, snapshot), f"mocks of {set_name}")
    progress.info("set %s: %d images, %d skipped", set_name, len(images),
                  int((out["row"] < 0).sum()))
    return out


# --------------------------------------------------------------------------- real cutouts

def build_observed_from_fits(directory: str | Path, settings: dict[str, Any], sky_subtracted: bool,
                             seed: int, split_fractions: dict[str, float], out_h5: str | Path,
                             out_csv: str | Path, config: dict) -> pd.DataFrame:
    """Real mode: the observed set from a directory of SDSS r-band FITS cutouts (nanomaggies).

    ``sky_subtracted`` false: the sigma-clipped median of each cutout's border is subtracted.
    The PSF FWHM is the header's ``PSF_FWHM`` (arcsec) when present, else the seeing median.
    """
    from astropy.io import fits
    from astropy.stats import sigma_clipped_stats

    settings = mi.check_mock_settings(settings)
    files, cutouts = mi.read_cutout_directory(directory, settings)
    images, fwhm, rows = [], [], []
    for path, cut in zip(files, cutouts, strict=True):
        if not sky_subtracted:
            border = np.concatenate([cut[:4].ravel(), cut[-4:].ravel(), cut[:, :4].ravel(),
                                     cut[:, -4:].ravel()])
            cut = cut - sigma_clipped_stats(border)[1]
        hdr = fits.getheader(path)
        f = float(hdr.get("PSF_FWHM", settings["psf"]["seeing_fwhm_arcsec"]["median"]))
        row = {"set": "observed", "file": str(path), "stellar_mass_msun": np.nan,
               "psf_fwhm_arcsec": f, "status": "selected", "reason": ""}
        row.update(_fit_row(cut, f, settings))
        if not row["ok"]:
            row.update(status="skipped", reason=f"Sersic fit: {row['reason']}", row=-1)
        else:
            row["row"] = len(images)
            row["half_light_radius_arcsec"] = row["sersic_rhalf_arcsec"]
            images.append(cut)
            fwhm.append(f)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["split"] = ""
    sel = table["row"].to_numpy() >= 0
    table.loc[sel, "split"] = assign_splits(int(sel.sum()), split_fractions, seed)
    return _write_set(out_h5, out_csv, images, fwhm, table.to_dict("records"), settings, config,
                      seed, files, "observed SDSS cutouts")


# --------------------------------------------------------------------------- archetypes, sky

def build_archetype_set(observed_h5: str | Path, observed_csv: str | Path,
                        settings: dict[str, Any], seed: int, out_h5: str | Path,
                        out_csv: str | Path, config: dict,
                        sky_dir: str | Path | None = None) -> pd.DataFrame:
    """One archetype per observed image (same row order, same split): its Sersic fit rendered
    with GalSim, convolved with its PSF, with the same sky and noise."""
    settings = mi.check_mock_settings(settings)
    obs = read_image_manifest(observed_csv)
    obs = obs[obs["row"] >= 0].sort_values("row")
    skies = _sky_cutouts(sky_dir, settings)
    images, fwhm, rows = [], [], []
    for k, (_, r) in enumerate(obs.iterrows()):
        fit = sf.SersicFit(True, "", **{f: float(r[f]) for f in sf.SersicFit.__dataclass_fields__
                                         if f not in ("ok", "reason")})
        aseed = derive_seed(seed, "realism-archetype", k)
        noisy, _ = sf.archetype_image(fit, float(r["psf_fwhm_arcsec"]), settings, aseed,
                                      _pick_sky(skies, derive_seed(aseed, "sky")))
        images.append(noisy)
        fwhm.append(float(r["psf_fwhm_arcsec"]))
        rows.append({**r.to_dict(), "set": "archetype", "row": k})
    return _write_set(out_h5, out_csv, images, fwhm, rows, settings, config, seed,
                      [observed_h5, observed_csv], "Sersic archetypes of the observed set")


def build_empty_sky_set(n: int, settings: dict[str, Any], seed: int, out_h5: str | Path,
                        out_csv: str | Path, config: dict,
                        sky_dir: str | Path | None = None) -> pd.DataFrame:
    """Control: n cutouts of empty sky with the noise of the mocks (or the user's sky)."""
    settings = mi.check_mock_settings(settings)
    skies = _sky_cutouts(sky_dir, settings)
    images = [mi.empty_sky(settings, derive_seed(seed, "realism-empty", k),
                           None if skies is None else skies[k % len(skies)]) for k in range(n)]
    fwhm = [float("nan")] * n
    rows = [{"set": "empty_sky", "row": k, "status": "selected", "reason": ""}
            for k in range(n)]
    return _write_set(out_h5, out_csv, images, fwhm, rows, settings, config, seed,
                      [] if sky_dir is None else [sky_dir], "empty-sky control")


# --------------------------------------------------------------------------- reading

def read_image_manifest(path: str | Path) -> pd.DataFrame:
    """The manifest of an image set."""
    path = Path(path)
    if not path.is_file():
        raise SimBridgeInputError("image-set manifest is missing", path,
                                  rebuild_fix(path, "realism_mocks"))
    table = read_table(path)
    if "row" not in table.columns:
        raise SimBridgeInputError("image-set manifest has no 'row' column", path,
                                  rebuild_fix(path, "realism_mocks"))
    return table


def read_model_input(path: str | Path) -> np.ndarray:
    """The stretched model inputs (N, m, m) of an image set."""
    with open_hdf5(path, "realism image set", rebuild_fix(path, "realism_mocks"),
                   required=["model_input"]) as fh:
        return np.asarray(fh["model_input"][...], dtype=np.float32)

"""Applying a trained ex-situ model to new galaxies: posterior maps from condition maps alone.

The input is an HDF5 file in the split-file layout (README, "Applying a trained model to new
galaxies"): ``conditions`` (N, 5, n, n) with ``attrs["channels"]`` and
``attrs["channel_units"]``, ``galaxy_mask`` (N, n, n) and ``pixel_size_kpc`` (N,); an
``exsitu_fraction_map`` is optional (unknown for new galaxies; when present, residuals are
recorded). Maps that do not fit the model (other map size, other channels or units, NaNs inside
the galaxy mask) are refused with a :class:`SimBridgeInputError` naming the file and the fix.
Galaxies whose normalised conditions lie far outside the training split's are inferred but
flagged, per galaxy, in the output file, its JSON summary and the log.

Out-of-distribution scores (both compared with the same scores of every training sample):

* ``pixel_outlier_fraction``: the fraction of galaxy pixels where any standardized channel
  (the model's :class:`~simbridge.models.data.ConditionNormalizer`, i.e. the training split's
  galaxy-pixel statistics) lies beyond ``pixel_outlier_sigma``;
* ``summary_mahalanobis2``: the squared Mahalanobis distance of the condition encoder's summary
  vector (the flow's context) from the training summaries' mean and covariance.

A galaxy is flagged when a score exceeds the ``ood_quantile`` quantile of the training split's
scores (numpy's 'higher' rule: with fewer than 1/(1 - q) training samples, their largest score;
the pixel fraction also needs at least 1% of the galaxy's pixels).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract.maps import MAP_CHANNELS, MAP_UNITS
from simbridge.io import (
    atomic_output,
    open_hdf5,
    partial_path,
    write_json_atomic,
    write_provenance,
)
from simbridge.models.data import ExsituMapDataset, batch_loader
from simbridge.models.exsitu import (
    load_trained_model,
    posterior_draws,
)
from simbridge.models.training import autocast, derive_seed, select_device

log = logging.getLogger(__name__)

#: Datasets an inference input must hold.
INPUT_REQUIRED = ("conditions", "galaxy_mask", "pixel_size_kpc")
#: Per-sample datasets copied from the input to the output when present (identifiers).
COPIED_FIELDS = ("subhalo_id", "snapshot", "redshift", "view_index", "half_width_kpc",
                 "half_mass_radius_kpc", "stellar_mass_msun")
#: Smallest fraction of a galaxy's pixels beyond pixel_outlier_sigma that can flag it.
MIN_OUTLIER_FRACTION = 0.01
LAYOUT_FIX = ("write the file in the layout of README.md, 'Applying a trained model to new "
              "galaxies': conditions (N, 5, n, n) float32 with attrs channels and "
              "channel_units, galaxy_mask (N, n, n), pixel_size_kpc (N,)")
#: Posterior kinds written: decoded likelihood means, and draws of the pixel likelihood.
KINDS = ("mean_map", "predictive")


def expected_channels(train_h5: str | Path) -> tuple[list[str], list[str]]:
    """Channel names and units of the training split (the package's when it records none)."""
    with h5py.File(train_h5, "r") as h5:
        attrs = h5["conditions"].attrs
        channels = _strings(attrs["channels"]) if "channels" in attrs else list(MAP_CHANNELS)
        units = _strings(attrs["channel_units"]) if "channel_units" in attrs else \
            [MAP_UNITS[c] for c in MAP_CHANNELS]
    return channels, units


def _strings(values: Any) -> list[str]:
    """An HDF5 string-list attribute as a list of str (h5py may give bytes)."""
    values = [values] if isinstance(values, (str, bytes)) else list(values)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def check_inference_file(path: str | Path, npix: int, channels: Sequence[str],
                         units: Sequence[str], model: str) -> int:
    """Check that an inference input fits the model; return its number of galaxies.

    Raises SimBridgeInputError naming the file and the fix for a missing file or dataset,
    another map size or number of channels, channel names or units unlike the training
    split's, NaN or inf inside the galaxy mask, or bad pixel sizes.
    """
    path = Path(path)
    with open_hdf5(path, "inference input file", LAYOUT_FIX, required=INPUT_REQUIRED,
                   missing_fix="check exsitu_model.inference.input_files in the config") as h5:
        shape = h5["conditions"].shape
        if len(shape) != 4 or shape[2] != shape[3]:
            raise SimBridgeInputError(f"conditions have shape {shape}; expected (N, 5, n, n)",
                                      path, LAYOUT_FIX)
        n, n_chan, n_pix = shape[0], shape[1], shape[2]
        if n_chan != len(channels):
            raise SimBridgeInputError(
                f"conditions hold {n_chan} channels; model {model} takes {len(channels)}: "
                f"{list(channels)}", path,
                f"provide exactly these channels, in this order, with units {list(units)}")
        if n_pix != npix:
            raise SimBridgeInputError(
                f"maps have {n_pix} x {n_pix} pixels; model {model} was trained on {npix} x "
                f"{npix}", path,
                f"resample the maps to {npix} x {npix} pixels over the same field of view "
                f"(or train a model with maps.npix: {n_pix})")
        attrs = h5["conditions"].attrs
        for key, want in (("channels", channels), ("channel_units", units)):
            if key not in attrs:
                raise SimBridgeInputError(
                    f"conditions have no attribute {key!r}", path,
                    f"set conditions.attrs[{key!r}] = {list(want)} (and make the maps match)")
            got = _strings(attrs[key])
            if got != list(want):
                raise SimBridgeInputError(
                    f"conditions.attrs[{key!r}] is {got}; model {model} was trained on "
                    f"{list(want)}", path,
                    f"convert the maps to the training channels and units {list(want)} "
                    f"(channels {list(channels)}) and set the attribute accordingly")
        if n == 0:
            raise SimBridgeInputError("inference input holds no galaxy", path, LAYOUT_FIX)
        for key, want in (("galaxy_mask", (n, npix, npix)), ("pixel_size_kpc", (n,))):
            if h5[key].shape != want:
                raise SimBridgeInputError(f"{key} has shape {h5[key].shape}; expected {want}",
                                          path, LAYOUT_FIX)
        pixel = h5["pixel_size_kpc"][:]
        if not np.all(np.isfinite(pixel) & (pixel > 0)):
            bad = int(np.flatnonzero(~(np.isfinite(pixel) & (pixel > 0)))[0])
            raise SimBridgeInputError(f"pixel_size_kpc of galaxy {bad} is {pixel[bad]}", path,
                                      "give every galaxy its pixel size in physical kpc (> 0)")
        for start in range(0, n, 256):
            stop = min(start + 256, n)
            cond = h5["conditions"][start:stop]
            mask = h5["galaxy_mask"][start:stop].astype(bool)
            bad = ~np.isfinite(cond) & mask[:, None]
            if bad.any():
                g, ch = (int(v) for v in np.argwhere(bad)[0][:2])
                raise SimBridgeInputError(
                    f"conditions hold NaN or inf inside the galaxy mask (first: galaxy {g}, "
                    f"channel {ch} {channels[ch]!r}, {int(bad[g - start].sum())} pixels)", path,
                    "fill those pixels or drop them from galaxy_mask (values outside the mask "
                    "are ignored)")
            if not mask.reshape(len(mask), -1).any(axis=1).all():
                g = start + int(np.flatnonzero(~mask.reshape(len(mask), -1).any(axis=1))[0])
                raise SimBridgeInputError(f"galaxy {g} has no pixel in galaxy_mask", path,
                                          "drop it or give it a mask of its pixels")
    return int(n)


def read_inputs(h5: h5py.File, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """Raw conditions (values outside the mask set to 0) and the mask, as float32 tensors."""
    mask = h5["galaxy_mask"][start:stop].astype(bool)
    cond = np.where(mask[:, None], h5["conditions"][start:stop], 0.0).astype(np.float32)
    return torch.from_numpy(cond), torch.from_numpy(mask[:, None].astype(np.float32))


@torch.no_grad()
def condition_scores(cvae: torch.nn.Module, cond: Tensor, mask: Tensor, sigma: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per galaxy: fraction of galaxy pixels with any standardized channel beyond ``sigma``,
    and the condition encoder's summary vector."""
    x = cvae.condition(cond, mask)
    far = (x[:, :5].abs() > sigma).any(dim=1) & mask[:, 0].bool()
    frac = far.flatten(1).sum(1).float() / mask.flatten(1).sum(1).clamp_min(1)
    _, summary = cvae.condition_encoder(x)
    return frac.cpu().numpy(), summary.float().cpu().numpy()


@torch.no_grad()
def training_reference(cvae: torch.nn.Module, train_h5: str | Path, sigma: float,
                       device: torch.device, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The out-of-distribution scores' reference: every training sample's pixel-outlier
    fraction and summary vector, and the summaries' mean and (regularised) inverse covariance."""
    ds = ExsituMapDataset(train_h5)
    fracs, summaries = [], []
    for cond, _, mask in batch_loader(ds, None, batch_size):
        f, s = condition_scores(cvae, cond.to(device), mask.to(device), sigma)
        fracs.append(f)
        summaries.append(s)
    ds.release_memory()
    summary = np.concatenate(summaries).astype(np.float64)
    mean = summary.mean(0)
    cov = np.cov(summary, rowvar=False).reshape(summary.shape[1], summary.shape[1])
    cov += np.eye(len(cov)) * max(1e-6 * float(np.trace(cov)) / len(cov), 1e-12)
    precision = np.linalg.inv(cov)
    return {"pixel_outlier_fraction": np.concatenate(fracs), "summary_mean": mean,
            "summary_precision": precision,
            "summary_mahalanobis2": mahalanobis2(summary, mean, precision)}


def mahalanobis2(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances of the rows of ``x``."""
    d = np.asarray(x, dtype=np.float64) - mean
    return np.einsum("ij,jk,ik->i", d, precision, d)


def _draw(cvae, flow, cond: Tensor, mask: Tensor, n_draws: int, predictive: bool,
          concentration_scale: float) -> Tensor:
    """Flow-mode posterior draws (n_draws, B, n, n): mean maps or predictive draws."""
    return posterior_draws(cvae, flow, cond, mask, None, "flow", n_draws,
                           predictive=predictive,
                           concentration_scale=concentration_scale).float()


def infer_posterior(
    cvae_path: str | Path,
    flow_path: str | Path,
    train_h5: str | Path,
    input_h5: str | Path,
    settings: dict[str, Any],
    out_h5: str | Path,
    out_summary: str | Path,
    device: str = "auto",
    batch_size: int = 8,
) -> dict[str, Any]:
    """Flow-mode posterior of the ex-situ map of every galaxy of ``input_h5``; write it.

    ``settings``: seed, model (name), n_draws, quantiles, pixel_outlier_sigma, ood_quantile.
    Writes ``out_h5`` (per kind in :data:`KINDS`: mean, std, quantiles, draws; NaN outside
    galaxy_mask; OOD scores and flags; provenance) and ``out_summary`` (JSON: per-galaxy
    warnings, thresholds, provenance). Returns the summary.
    """
    dev = select_device(device)
    trained = load_trained_model(cvae_path, flow_path, dev)
    cvae, flow = trained.cvae, trained.flow
    scale = trained.concentration_scale
    model = str(settings.get("model") or Path(cvae_path).parent.name)
    channels, units = expected_channels(train_h5)
    n = check_inference_file(input_h5, cvae.arch.npix, channels, units, model)
    npix = cvae.arch.npix
    n_draws = int(settings["n_draws"])
    quantiles = np.asarray([float(q) for q in settings["quantiles"]])
    if np.any((quantiles <= 0) | (quantiles >= 1)):
        raise SimBridgeConfigError(
            f"exsitu_model.inference.quantiles must lie in (0, 1), got {quantiles.tolist()}")
    sigma = float(settings["pixel_outlier_sigma"])
    ood_q = float(settings["ood_quantile"])
    kinds = KINDS

    ref = training_reference(cvae, train_h5, sigma, dev)
    # 'higher': a training value, so no training sample lies beyond its own threshold
    thresholds = {
        "pixel_outlier_fraction": max(float(np.quantile(ref["pixel_outlier_fraction"], ood_q,
                                                        method="higher")),
                                      MIN_OUTLIER_FRACTION),
        "summary_mahalanobis2": float(np.quantile(ref["summary_mahalanobis2"], ood_q,
                                                  method="higher")),
    }
    torch.manual_seed(derive_seed(settings["seed"], "inference", model))
    scores = {"pixel_outlier_fraction": np.zeros(n), "summary_mahalanobis2": np.zeros(n)}
    truth_residual = np.full(n, np.nan)
    with h5py.File(input_h5, "r") as src, atomic_output(out_h5) as tmp, \
            h5py.File(tmp, "w") as out:
        has_truth = "exsitu_fraction_map" in src and src["exsitu_fraction_map"].shape == (
            n, npix, npix)
        maps: dict[str, dict[str, h5py.Dataset]] = {}
        for kind in kinds:
            grp = out.create_group(kind)
            grp.attrs["description"] = (
                "flow-mode posterior of the mean map (each draw: the pixel likelihood's mean for "
                "one latent drawn from the flow)" if kind == "mean_map" else
                "flow-mode posterior predictive (each draw: one sample of every pixel's "
                "likelihood, a plausible ex-situ map)")
            spec = {"mean": (n, npix, npix), "std": (n, npix, npix),
                    "quantiles": (n, len(quantiles), npix, npix),
                    "draws": (n, n_draws, npix, npix)}
            maps[kind] = {}
            for key, shape in spec.items():
                d = grp.create_dataset(key, shape, "f4", chunks=(1, *shape[1:]),
                                       compression="lzf", track_times=False)
                d.attrs["units"] = "ex-situ stellar mass fraction; NaN outside galaxy_mask"
                maps[kind][key] = d
            maps[kind]["quantiles"].attrs["quantiles"] = quantiles
            maps[kind]["quantiles"].attrs["method"] = "numpy weibull plotting positions"
        out.create_dataset("galaxy_mask", data=src["galaxy_mask"][:].astype(np.uint8),
                           track_times=False)
        out.create_dataset("pixel_size_kpc", data=src["pixel_size_kpc"][:], track_times=False)
        out["pixel_size_kpc"].attrs["units"] = "kpc (physical)"
        for key in COPIED_FIELDS:
            if key in src and src[key].shape[:1] == (n,):
                out.create_dataset(key, data=src[key][:], track_times=False)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            cond, mask = read_inputs(src, start, stop)
            cond, mask = cond.to(dev), mask.to(dev)
            frac, summary = condition_scores(cvae, cond, mask, sigma)
            scores["pixel_outlier_fraction"][start:stop] = frac
            scores["summary_mahalanobis2"][start:stop] = mahalanobis2(
                summary, ref["summary_mean"], ref["summary_precision"])
            outside = ~mask[:, 0].bool().cpu().numpy()
            for kind in kinds:
                with autocast(dev):
                    draws = _draw(cvae, flow, cond, mask, n_draws, kind == "predictive",
                                  scale).cpu().numpy()
                draws[:, outside] = np.nan
                m = maps[kind]
                m["mean"][start:stop] = draws.mean(0)
                m["std"][start:stop] = draws.std(0)
                m["quantiles"][start:stop] = np.moveaxis(
                    np.quantile(draws, quantiles, axis=0, method="weibull"), 0, 1)
                m["draws"][start:stop] = np.moveaxis(draws, 0, 1)
                if kind == "mean_map" and has_truth:
                    res = np.where(outside, 0.0, np.abs(draws.mean(0)
                                                        - src["exsitu_fraction_map"][start:stop]))
                    truth_residual[start:stop] = res.sum((1, 2)) / (~outside).sum((1, 2))
        # a relative margin for float rounding (a training sample scored in another batch)
        flags = {k: scores[k] > thresholds[k] * (1 + 1e-4) for k in scores}
        ood = flags["pixel_outlier_fraction"] | flags["summary_mahalanobis2"]
        for key, value in scores.items():
            d = out.create_dataset(key, data=value, track_times=False)
            d.attrs["threshold"] = thresholds[key]
        out.create_dataset("out_of_distribution", data=ood.astype(np.uint8), track_times=False)
        out["out_of_distribution"].attrs["description"] = (
            f"1: a score exceeds its threshold (the {ood_q} quantile of the training split's "
            "scores); the posterior of such a galaxy extrapolates the model")
        if has_truth:
            out.create_dataset("mean_abs_residual", data=truth_residual, track_times=False)
            out["mean_abs_residual"].attrs["description"] = (
                "mean |posterior mean (mean map) - exsitu_fraction_map| over galaxy pixels")
        provenance = {"model": model, "cvae": str(cvae_path), "flow": str(flow_path),
                      "input_file": str(input_h5), "training_split": str(train_h5),
                      "seed": int(settings["seed"]), "n_draws": n_draws,
                      "concentration_scale": scale}
        out.attrs.update({k: v for k, v in provenance.items()})
        out.attrs["kinds"] = list(kinds)
        write_provenance(out, {"settings": settings, **provenance}, int(settings["seed"]),
                         [input_h5, cvae_path, flow_path, train_h5])
        config_sha = str(out["provenance"].attrs["config_sha256"])

    galaxies = []
    for i in range(n):
        warnings = []
        if flags["pixel_outlier_fraction"][i]:
            warnings.append(
                f"{scores['pixel_outlier_fraction'][i]:.1%} of its pixels lie beyond "
                f"{sigma:g} sigma of the training conditions (threshold "
                f"{thresholds['pixel_outlier_fraction']:.1%})")
        if flags["summary_mahalanobis2"][i]:
            warnings.append(
                f"its condition summary lies at squared Mahalanobis distance "
                f"{scores['summary_mahalanobis2'][i]:.3g} from the training split's "
                f"(threshold {thresholds['summary_mahalanobis2']:.3g})")
        for w in warnings:
            log.warning("%s, galaxy %d: out of the training distribution: %s",
                        Path(input_h5).name, i, w)
        row = {"index": i, "out_of_distribution": bool(ood[i]), "warnings": warnings,
               **{k: float(scores[k][i]) for k in scores}}
        if has_truth:
            row["mean_abs_residual"] = float(truth_residual[i])
        galaxies.append(row)
    summary = {"n_galaxies": n, "n_out_of_distribution": int(ood.sum()), "npix": npix,
               "quantiles": quantiles.tolist(), "kinds": list(kinds), "thresholds": thresholds,
               "ood_quantile": ood_q, "pixel_outlier_sigma": sigma,
               "config_sha256": config_sha, **provenance, "galaxies": galaxies}
    log.info("%s: %d galaxies inferred with %s (%d draws), %d flagged out of distribution",
             Path(input_h5).name, n, model, n_draws, int(ood.sum()))
    write_json_atomic(out_summary, summary)
    return summary


def plot_inference(input_h5: str | Path, posterior_h5: str | Path, out_dir: str | Path,
                   max_figures: int | None = None) -> list[Path]:
    """One figure per galaxy (the first ``max_figures``; None: all): the five conditions, the
    posterior mean and standard deviation of the mean map and, when written, the predictive
    standard deviation and one predictive draw. Written into ``out_dir`` as galaxy_NNNNN.png."""
    out_dir = Path(out_dir)
    tmp = partial_path(out_dir)  # a folder: written whole under a temporary name, then renamed
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written = []
    try:
        _plot_galaxies(input_h5, posterior_h5, tmp, max_figures, written, out_dir)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _plot_galaxies(input_h5: str | Path, posterior_h5: str | Path, tmp: Path,
                   max_figures: int | None, written: list[Path], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simbridge.report.figures import _PANELS

    with h5py.File(input_h5, "r") as src, h5py.File(posterior_h5, "r") as post:
        n = post["galaxy_mask"].shape[0]
        count = n if max_figures is None else min(n, int(max_figures))
        kinds = [str(k) for k in post.attrs["kinds"]]
        for i in range(count):
            mask = post["galaxy_mask"][i].astype(bool)
            hw = 0.5 * float(post["pixel_size_kpc"][i]) * mask.shape[0]
            extent = (-hw, hw, -hw, hw)
            panels = []
            for ch, (title, cmap, transform, symmetric) in enumerate(_PANELS):
                img = np.where(mask, src["conditions"][i, ch], np.nan)
                if transform == "log":
                    img = np.log10(np.where(img > 0, img, np.nan))
                lim = float(np.nanmax(np.abs(img))) if symmetric else None
                panels.append((title, img, cmap, (-lim, lim) if symmetric else (None, None)))
            panels.append(("posterior mean", post["mean_map/mean"][i], "inferno", (0, 1)))
            panels.append(("posterior std (mean map)", post["mean_map/std"][i], "viridis",
                           (0, None)))
            if "predictive" in kinds:
                panels.append(("predictive std", post["predictive/std"][i], "viridis",
                               (0, None)))
                panels.append(("a predictive draw", post["predictive/draws"][i, 0], "inferno",
                               (0, 1)))
            fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.6),
                                     constrained_layout=True, squeeze=False)
            for ax, (title, img, cmap, (vmin, vmax)) in zip(axes[0], panels, strict=True):
                im = ax.imshow(img, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                               extent=extent)
                ax.set_title(title, fontsize=7)
                ax.tick_params(labelsize=6)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            axes[0][0].set_ylabel("kpc", fontsize=7)
            label = f"galaxy {i}"
            if "subhalo_id" in post:
                label += f" (subhalo {post['subhalo_id'][i]}"
                label += f", snapshot {post['snapshot'][i]})" if "snapshot" in post else ")"
            if post["out_of_distribution"][i]:
                label += ": OUT OF THE TRAINING DISTRIBUTION"
            fig.suptitle(f"{label} - model {post.attrs['model']}", fontsize=8)
            path = tmp / f"galaxy_{i:05d}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(out_dir / path.name)


def read_summary(path: str | Path) -> dict[str, Any]:
    """The JSON summary an inference job wrote."""
    return json.loads(Path(path).read_text())

"""Report figures of the IFU-like ex-situ dataset: example maps and the model comparison."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simbridge.report import save_figure as _save  # noqa: E402

CASE_LABELS = {
    "ideal_on_ideal": "ideal-trained on ideal maps",
    "ifu_on_ifu": "IFU-trained on IFU-like maps",
    "ideal_on_ifu": "ideal-trained on IFU-like maps (mistake)",
}


def _finite_percentile(img: np.ndarray, q: float, default: float) -> float:
    """The q-th percentile of the finite values of ``img`` (``default`` when there are none)."""
    finite = img[np.isfinite(img)]
    return float(np.percentile(finite, q)) if finite.size else default


def plot_ifu_examples(split_h5: str | Path, out_png: str | Path, n_galaxies: int) -> None:
    """Per example sample: ideal and IFU-like velocity and dispersion, the Voronoi bins, the
    bins' S/N and the r-band surface brightness (rows: samples of distinct galaxies)."""
    with h5py.File(split_h5, "r") as h5:
        ids = h5["subhalo_id"][:]
        _, first = np.unique(ids, return_index=True)
        rows = sorted(first)[:n_galaxies]
        panels = []
        for i in rows:
            mask = h5["galaxy_mask"][i].astype(bool)
            ideal_mask = h5["ideal_galaxy_mask"][i].astype(bool)
            ideal, obs = h5["ideal_conditions"][i], h5["conditions"][i]
            panels.append((
                int(ids[i]), int(h5["snapshot"][i]),
                [np.where(ideal_mask, ideal[1], np.nan), np.where(mask, obs[1], np.nan),
                 np.where(ideal_mask, ideal[2], np.nan), np.where(mask, obs[2], np.nan),
                 np.where(h5["voronoi_bin"][i] >= 0, h5["voronoi_bin"][i], np.nan),
                 np.where(mask, h5["bin_snr"][i], np.nan),
                 np.where(h5["r_surface_brightness"][i] < 99, h5["r_surface_brightness"][i],
                          np.nan)]))
    titles = ["ideal v [km/s] (mass-w.)", "IFU v (light-w., PSF)", "ideal sigma [km/s]",
              "IFU sigma (incl. beam smearing)", "Voronoi bins", "bin S/N (r band)",
              "mu_r [mag/arcsec^2]"]
    fig, axes = plt.subplots(len(panels), len(titles), figsize=(2.2 * len(titles),
                                                                 2.2 * len(panels)),
                             squeeze=False)
    rng = np.random.default_rng(0)  # colours of the bins only
    for r, (sub, snap, maps) in enumerate(panels):
        # ideal and IFU-like maps of one quantity share a colour scale
        vlim = _finite_percentile(np.abs(maps[0]), 99.0, 1.0)
        slim = max(_finite_percentile(maps[2], 99.0, 1.0), _finite_percentile(maps[3], 100.0, 1.0))
        for c, (img, title) in enumerate(zip(maps, titles, strict=True)):
            ax = axes[r, c]
            if c in (0, 1):
                im = ax.imshow(img, origin="lower", cmap="RdBu_r", vmin=-vlim, vmax=vlim)
            elif c in (2, 3):
                im = ax.imshow(img, origin="lower", cmap="viridis", vmin=0.0, vmax=slim)
            elif c == 4:  # bins in shuffled colours, no colour bar (the index has no scale)
                lut = rng.permutation(int(np.nanmax(img)) + 1 if np.isfinite(img).any() else 1)
                shown = np.where(np.isfinite(img), lut[np.nan_to_num(img).astype(int)], np.nan)
                ax.imshow(shown, origin="lower", cmap="tab20", interpolation="nearest")
                im = None
            else:
                im = ax.imshow(img, origin="lower", cmap="magma_r" if c == 6 else "viridis")
            if im is not None:
                fig.colorbar(im, ax=ax, fraction=0.046)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(f"snap {snap} sub {sub}", fontsize=7)
    _save(fig, out_png)


def plot_ifu_comparison(metrics_json: str | Path, out_png: str | Path) -> None:
    """Mean |residual| per mode for the three cases, flow-mode residual against R / R_e, and
    flow-mode predictive coverage against the credible level."""
    m = json.loads(Path(metrics_json).read_text())
    cases = list(m["cases"])
    modes = list(m["cases"][cases[0]]["modes"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    width = 0.8 / len(cases)
    for j, case in enumerate(cases):
        vals = [m["cases"][case]["modes"][mode]["mean_abs_residual"] for mode in modes]
        axes[0].bar(np.arange(len(modes)) + j * width, vals, width, label=CASE_LABELS[case])
        prof = m["cases"][case]["modes"]["flow"]["residual_vs_radius"]
        mid = [0.5 * (p["r_min"] + p["r_max"]) for p in prof]
        val = [np.nan if p["mean_abs_residual"] is None else p["mean_abs_residual"]
               for p in prof]
        axes[1].plot(mid, val, "o-", label=CASE_LABELS[case])
        coverage = m["cases"][case]["modes"]["flow"]["coverage"]  # level -> coverage
        axes[2].plot([float(k) for k in coverage], list(coverage.values()), "o-",
                     label=CASE_LABELS[case])
    axes[0].set_xticks(np.arange(len(modes)) + width * (len(cases) - 1) / 2, modes)
    axes[0].set_ylabel("mean |posterior mean - truth|")
    axes[0].set_title(f"same {m['n_pixels']} IFU pixels, {m['n_test_samples']} test maps",
                      fontsize=9)
    axes[1].set_xlabel("R / R_e (projected r-band half-light radius)")
    axes[1].set_ylabel("flow mode: mean |posterior mean - truth|")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("residual against radius (same pixels)", fontsize=9)
    axes[2].plot([0, 1], [0, 1], "k:", lw=1, label="calibrated")
    axes[2].set_xlabel("credible level")
    axes[2].set_ylabel("flow predictive coverage")
    axes[2].set_title("coverage (each evaluation's galaxy pixels)", fontsize=9)
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    _save(fig, out_png)

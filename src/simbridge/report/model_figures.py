"""Report figures of the ex-situ posterior model: training curves, residuals, calibration,
example galaxies and the comparison of the models of a sweep."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from simbridge.io import atomic_output, read_table  # noqa: E402
from simbridge.report.figures import _PANELS  # noqa: E402

MODE_COLORS = {"reconstruction": "tab:green", "prior": "tab:gray", "flow": "tab:blue"}
MODE_LABELS = {"reconstruction": "reconstruction (true map encoded)",
               "prior": "prior sampling", "flow": "flow sampling"}


def _save(fig: plt.Figure, out_png: str | Path) -> None:
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_training_curves(history_csv: str | Path, out_png: str | Path, title: str,
                         terms: Sequence[str] = ("recon", "kl"),
                         loss_label: str = "loss (masked MSE + beta KL)") -> None:
    """Training and validation loss per epoch (and each loss term), best epoch marked."""
    h = read_table(history_csv)
    ncol = 1 + len(terms)
    fig, axes = plt.subplots(1, ncol, figsize=(4.2 * ncol, 3.4), squeeze=False,
                             constrained_layout=True)
    best = h[h["best"].astype(str) == "True"].iloc[-1]  # the epoch whose weights are kept
    labels = {"recon": "reconstruction (masked MSE)", "kl": "KL(q(z|x,c) || N(0,I)) [nats]"}
    for ax, term in zip(axes[0], ("loss", *terms), strict=True):
        ax.plot(h["epoch"], h[f"train_{term}"], label="training", color="tab:blue")
        ax.plot(h["epoch"], h[f"val_{term}"], label="validation", color="tab:orange")
        ax.axvline(best["epoch"], color="k", ls=":", lw=1,
                   label=f"best (epoch {best['epoch']:.0f})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(loss_label if term == "loss" else labels.get(term, term))
        values = np.concatenate([h[f"train_{term}"], h[f"val_{term}"]])
        if np.all(values > 0) and values.max() / values.min() > 20:
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=8)
    rate = h["train_samples_per_s"].median()
    fig.suptitle(f"{title}: {len(h)} epochs, {rate:.0f} training samples/s")
    _save(fig, out_png)


def _metrics(metrics_json: str | Path) -> dict:
    return json.loads(Path(metrics_json).read_text())


def plot_residuals(metrics_json: str | Path, out_png: str | Path) -> None:
    """Distribution of absolute pixel residuals per inference mode, means marked."""
    m = _metrics(metrics_json)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    for mode, stats in m["modes"].items():
        edges = np.asarray(stats["residual_histogram"]["bin_edges"])
        counts = np.asarray(stats["residual_histogram"]["counts"], dtype=float)
        density = counts / max(counts.sum(), 1) / np.diff(edges)
        ax.stairs(density, edges, color=MODE_COLORS[mode], lw=1.6,
                  label=f"{MODE_LABELS[mode]}: mean {stats['mean_abs_residual']:.3f}")
        ax.axvline(stats["mean_abs_residual"], color=MODE_COLORS[mode], ls="--", lw=1)
    ax.set_xlabel("|posterior mean - true ex-situ fraction| per galaxy pixel")
    ax.set_ylabel("probability density")
    ax.set_yscale("log")
    ax.set_title(f"test split: {m['n_samples']} maps, {m['n_galaxy_pixels']:,} galaxy pixels, "
                 f"{m['n_draws']} draws", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, out_png)


def plot_residual_vs_truth(metrics_json: str | Path, out_png: str | Path) -> None:
    """Mean absolute and mean signed residual in bins of the true ex-situ fraction."""
    m = _metrics(metrics_json)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for mode, stats in m["modes"].items():
        b = stats["residual_vs_truth"]
        edges = np.asarray(b["bin_edges"])
        centers = 0.5 * (edges[1:] + edges[:-1])
        mean_abs = np.array([np.nan if v is None else v for v in b["mean_abs"]])
        mean_signed = np.array([np.nan if v is None else v for v in b["mean_signed"]])
        ax.plot(centers, mean_abs, "o-", color=MODE_COLORS[mode], label=MODE_LABELS[mode])
        ax2.plot(centers, mean_signed, "o-", color=MODE_COLORS[mode])
    counts = np.asarray(next(iter(m["modes"].values()))["residual_vs_truth"]["count"])
    ax.set_xlabel("true ex-situ fraction of the pixel")
    ax.set_ylabel("mean |residual|")
    ax.legend(fontsize=8)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("true ex-situ fraction of the pixel")
    ax2.set_ylabel("mean (posterior mean - truth)")
    for a in (ax, ax2):
        a.set_xlim(0, 1)
    twin = ax.twinx()
    twin.bar(centers, counts, width=np.diff(edges), alpha=0.12, color="k")
    twin.set_ylabel("galaxy pixels per bin", color="0.5")
    _save(fig, out_png)


def _coverage_panel(ax: plt.Axes, m: dict, block: str, title: str) -> None:
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, label="calibrated")
    tol = m.get("calibration_tolerance", 0.05)
    ax.fill_between([0, 1], [-tol, 1 - tol], [tol, 1 + tol], color="k", alpha=0.07,
                    label=f"+-{tol:g}")
    for mode, stats in m["modes"].items():
        sub = stats.get(block, stats)
        levels = np.array([float(k) for k in sub["coverage"]])
        cov = np.array(list(sub["coverage"].values()))
        ax.plot(levels, cov, "o-", color=MODE_COLORS[mode], ms=3,
                label=f"{MODE_LABELS[mode]} (mean |error| {sub['coverage_mean_abs_error']:.2f})")
        ax.plot(levels, list(sub["coverage_interior"].values()), "--", color=MODE_COLORS[mode],
                lw=1)
    ax.plot([], [], "k--", lw=1, label="pixels with 0 < truth < 1 only")
    ax.set_xlabel("credible level of the central interval")
    ax.set_ylabel("fraction of galaxy pixels covered")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6.5, loc="upper left")
    ax.set_title(title, fontsize=9)


def plot_coverage(metrics_json: str | Path, out_png: str | Path) -> None:
    """Calibration: fraction of true pixels inside central credible intervals vs the level,
    for the posterior predictive (left) and the posterior of the mean map (right)."""
    m = _metrics(metrics_json)
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 4.4), constrained_layout=True)
    _coverage_panel(axes[0], m, "predictive",
                    "posterior predictive per pixel (randomized PIT, no tolerance)")
    _coverage_panel(axes[1], m, "mean_map",
                    f"posterior of the mean map (intervals +-{m.get('coverage_tolerance', 0):g})")
    _save(fig, out_png)


def plot_calibration(metrics_json: str | Path, out_png: str | Path, mode: str = "flow") -> None:
    """PIT histograms of the posterior predictive and coverage per group of true fraction."""
    m = _metrics(metrics_json)
    pred = m["modes"][mode]["predictive"]
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.2), constrained_layout=True)
    ax = axes[0]
    for key, label, style in (("pit_histogram", "all galaxy pixels", "-"),
                              ("pit_histogram_interior", "0 < truth < 1 (continuous part)",
                               "--")):
        edges = np.asarray(pred[key]["bin_edges"])
        counts = np.asarray(pred[key]["counts"], dtype=float)
        density = counts / max(counts.sum(), 1) / np.diff(edges)
        ax.stairs(density, edges, ls=style, lw=1.5, label=label)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("randomized PIT of the true fraction")
    ax.set_ylabel("density (1 = calibrated)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"PIT histogram, {MODE_LABELS[mode]}", fontsize=9)
    ax = axes[1]
    levels = np.asarray(m["credible_levels"])
    ax.plot([0, 1], [0, 1], color="k", lw=0.8)
    groups = pred["coverage_by_true_fraction"]
    order = ("0", "(0, 0.2)", "[0.2, 0.4)", "[0.4, 0.6)", "[0.6, 0.8)", "[0.8, 1)", "1")
    groups = {k: groups[k] for k in sorted(groups, key=lambda k: (order + (k,)).index(k))}
    cmap = plt.get_cmap("viridis")
    for i, (label, g) in enumerate(groups.items()):
        if g["coverage"] is None:
            continue
        ax.plot(levels, g["coverage"], "o-", ms=3, color=cmap(i / max(len(groups) - 1, 1)),
                label=f"truth {label} ({g['n_pixels']} px)")
    ax.set_xlabel("credible level of the central interval")
    ax.set_ylabel("fraction covered")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6.5, loc="upper left")
    ax.set_title("predictive coverage per group of true fraction", fontsize=9)
    _save(fig, out_png)


def plot_example_posteriors(test_h5: str | Path, posterior_h5: str | Path, out_png: str | Path,
                            n_galaxies: int = 4) -> None:
    """Five conditions, the truth, three posterior means, the flow posterior's std (mean map
    and predictive) and one flow-mode predictive draw (a plausible ex-situ map)."""
    with h5py.File(posterior_h5, "r") as post, h5py.File(test_h5, "r") as h5:
        modes = list(post["posterior_mean"].attrs["modes"])
        frac = h5["exsitu_fraction_global"][:] if "exsitu_fraction_global" in h5 else \
            np.arange(h5["conditions"].shape[0], dtype=float)
        # one view per galaxy, spread over the range of global ex-situ fraction
        keys = (list(zip(h5["snapshot"][:], h5["subhalo_id"][:], strict=True))
                if "subhalo_id" in h5 else list(range(len(frac))))
        first = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        cand = np.array(sorted(first.values(), key=lambda i: frac[i]))
        picks = cand[np.unique(np.linspace(0, len(cand) - 1, min(n_galaxies, len(cand)))
                               .round().astype(int))]
        titles = [p[0] for p in _PANELS] + ["true ex-situ fraction"] + \
            [f"mean, {mode}" for mode in modes] + ["std of mean map, flow"] + \
            (["predictive std, flow", "predictive draw, flow"] if "predictive_std" in post
             else [])
        ncol = len(titles)
        fig, axes = plt.subplots(len(picks), ncol, figsize=(1.9 * ncol, 2.0 * len(picks)),
                                 squeeze=False, constrained_layout=True)
        for row, k in zip(axes, picks, strict=True):
            mask = h5["galaxy_mask"][k].astype(bool)
            cond = h5["conditions"][k]
            panels = []
            for ch, (_, cmap, transform, symmetric) in enumerate(_PANELS):
                img = np.where(mask, cond[ch], np.nan)
                if transform == "log":
                    img = np.log10(np.where(img > 0, img, np.nan))
                lim = np.nanmax(np.abs(img)) if symmetric else None
                panels.append((img, cmap, (-lim, lim) if symmetric else (None, None)))
            panels.append((np.where(mask, h5["exsitu_fraction_map"][k], np.nan), "inferno",
                           (0, 1)))
            for j in range(len(modes)):
                panels.append((np.where(mask, post["posterior_mean"][k, j], np.nan), "inferno",
                               (0, 1)))
            std = np.where(mask, post["posterior_std"][k, modes.index("flow")], np.nan)
            panels.append((std, "viridis", (0, None)))
            if "predictive_std" in post:
                fl = modes.index("flow")
                panels.append((np.where(mask, post["predictive_std"][k, fl], np.nan), "viridis",
                               (0, None)))
                panels.append((np.where(mask, post["predictive_draw"][k, fl], np.nan), "inferno",
                               (0, 1)))
            for ax, (img, cmap, (vmin, vmax)) in zip(row, panels, strict=True):
                im = ax.imshow(img, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
                ax.set_xticks([])
                ax.set_yticks([])
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            label = (f"subhalo {h5['subhalo_id'][k]}\nsnap {h5['snapshot'][k]}, "
                     f"f_ex={frac[k]:.2f}" if "subhalo_id" in h5 else f"sample {k}")
            row[0].set_ylabel(label, fontsize=7)
        for ax, title in zip(axes[0], titles, strict=True):
            ax.set_title(title, fontsize=7)
    _save(fig, out_png)


def compare_models(metrics_files: Sequence[str | Path], names: Sequence[str],
                   out_csv: str | Path, out_png: str | Path) -> pd.DataFrame:
    """Table and figure of the sweep: residuals per mode, calibration and losses per model."""
    rows = []
    for name, path in zip(names, metrics_files, strict=True):
        m = _metrics(path)
        row = {"model": name, "latent_dim": m["latent_dim"], "beta": m["beta"],
               "cvae_best_val_loss": m["cvae_best_val_loss"],
               "cvae_best_val_recon": m.get("cvae_best_val_recon"),
               "cvae_best_val_kl": m.get("cvae_best_val_kl"),
               "flow_best_val_loss": m["flow_best_val_loss"]}
        for mode, stats in m["modes"].items():
            row[f"{mode}_mean_abs_residual"] = stats["mean_abs_residual"]
            row[f"{mode}_coverage_mean_abs_error"] = stats["coverage_mean_abs_error"]
        row["flow_beats_prior"] = m["checks"]["flow_beats_prior"]
        rows.append(row)
    table = pd.DataFrame(rows)
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    modes = list(MODE_COLORS)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(table) + 4), 3.8),
                                  constrained_layout=True)
    x = np.arange(len(table))
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        ax.bar(x + (j - 1) * width, table[f"{mode}_mean_abs_residual"], width,
               color=MODE_COLORS[mode], label=MODE_LABELS[mode])
        ax2.bar(x + (j - 1) * width, table[f"{mode}_coverage_mean_abs_error"], width,
                color=MODE_COLORS[mode])
    labels = [f"latent {r.latent_dim}\nbeta {r.beta:g}" for r in table.itertuples()]
    for a in (ax, ax2):
        a.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("mean |residual| per galaxy pixel")
    ax2.set_ylabel("mean |coverage - credible level|")
    ax.legend(fontsize=8)
    fig.suptitle("sweep over latent size and KL weight (test split)")
    _save(fig, out_png)
    return table

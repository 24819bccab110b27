"""Report figures of the realism branch: LLR distributions, trends, LLR maps, curves."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simbridge.io import read_table  # noqa: E402
from simbridge.report import save_figure as _save  # noqa: E402

TREND_LABELS = {"stellar_mass_msun": "stellar mass [Msun]",
                "half_light_radius_kpc": "r-band half-light radius [kpc]",
                "sersic_n": "Sersic index n"}


def plot_llr_distributions(metrics: dict, scores_h5: str | Path, out_png: str | Path) -> None:
    """Histogram of the LLR per image of every set; the observed held-out set is the
    reference (black), its archetypes and the empty sky the controls (dashed)."""
    with h5py.File(scores_h5, "r") as fh:
        g = fh["main"]
        llr = {n: g[n]["llr"][...] for n in g}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    allv = np.concatenate(list(llr.values()))
    bins = np.linspace(np.percentile(allv, 1), np.percentile(allv, 99), 30)
    sets = metrics["main"]["sets"]
    for name, v in llr.items():
        style = {"observed_test": dict(color="k", lw=2.2),
                 "archetype_test": dict(color="0.5", ls="--"),
                 "empty_sky": dict(color="tab:cyan", ls=":")}.get(name, {})
        ax.hist(v, bins=bins, histtype="step", density=True,
                label=f"{name} ({sets[name]['mean']:.1f} +- {sets[name]['bootstrap_se']:.1f})",
                **style)
    ax.set_xlabel("LLR = log p_obs(x) - log p_archetype(x) [nats per image]")
    ax.set_ylabel("density")
    check = metrics["main"].get("closest_check")
    title = "mean LLR (bootstrap SE) per set"
    if check:
        m = check["margin_over_runner_up"]
        title += (f"; {check['closest_simulation']} highest: {check['scores_highest']}"
                  + (f", margin {m['difference']:.1f} +- {m['bootstrap_se']:.1f}" if m else ""))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, out_png)


def plot_llr_trends(metrics: dict, out_png: str | Path) -> None:
    """Mean LLR (bootstrap 68% band) in bins of stellar mass, size and Sersic index."""
    trends = metrics["main"]["trends"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, (col, label) in zip(axes, TREND_LABELS.items(), strict=True):
        for name, t in trends.items():
            tr = t[col]
            if not tr["bin_centre"]:
                continue
            kw = dict(color="k", lw=2) if name == "observed_test" else {}
            line, = ax.plot(tr["bin_centre"], tr["mean"], marker="o", label=name, **kw)
            ax.fill_between(tr["bin_centre"], tr["low"], tr["high"], alpha=0.2,
                            color=line.get_color())
        if col != "sersic_n":
            ax.set_xscale("log")
        ax.set_xlabel(label)
    axes[0].set_ylabel("mean LLR [nats per image]")
    axes[0].legend(fontsize=7)
    _save(fig, out_png)


def plot_llr_maps(metrics: dict, scores_h5: str | Path, n_examples: int,
                  out_png: str | Path) -> None:
    """Example images of the observed test set and every simulation with their per-pixel LLR."""
    with h5py.File(scores_h5, "r") as fh:
        g = fh["main"]
        names = [n for n in g if n != "empty_sky"]
        fig, axes = plt.subplots(2 * len(names), n_examples,
                                 figsize=(1.8 * n_examples, 3.6 * len(names)), squeeze=False)
        for i, name in enumerate(names):
            x, m, llr = g[name]["model_input"], g[name]["llr_map"], g[name]["llr"][...]
            for j in range(n_examples):
                for r in (0, 1):
                    axes[2 * i + r, j].set_axis_off()
                if j >= len(llr):
                    continue
                axes[2 * i, j].imshow(x[j], origin="lower", cmap="gray", vmin=-0.1, vmax=1)
                axes[2 * i, j].set_title(f"{name} LLR {llr[j]:.0f}", fontsize=7)
                lim = float(np.abs(m[j]).max()) or 1.0
                axes[2 * i + 1, j].imshow(m[j], origin="lower", cmap="RdBu_r", vmin=-lim,
                                          vmax=lim)
                axes[2 * i + 1, j].set_title(f"LLR map (+-{lim:.2f})", fontsize=7)
    _save(fig, out_png)


def plot_training_curves(histories: Sequence[str | Path], models: Sequence[str],
                         out_png: str | Path) -> None:
    """Training and validation NLL per pixel of every PixelCNN."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for path, name in zip(histories, models, strict=True):
        h = read_table(path)
        line, = ax.plot(h["epoch"], h["train_loss"], label=f"{name} train")
        ax.plot(h["epoch"], h["val_loss"], ls="--", color=line.get_color(),
                label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL [nats per pixel]")
    ax.legend(fontsize=7)
    _save(fig, out_png)


def plot_realism(metrics_json: str | Path, scores_h5: str | Path, histories: Sequence[str],
                 models: Sequence[str], outputs: Mapping[str, str]) -> None:
    """Every figure of the branch (keys of ``outputs``: the figure names)."""
    metrics = json.loads(Path(metrics_json).read_text())
    plot_llr_distributions(metrics, scores_h5, outputs["llr_distributions"])
    plot_llr_trends(metrics, outputs["llr_trends"])
    plot_llr_maps(metrics, scores_h5, 4, outputs["llr_maps"])
    plot_training_curves(histories, models, outputs["training_curves"])

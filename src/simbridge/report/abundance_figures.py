"""Report figures of the abundances branch: abundance planes, posteriors, calibration, tuning."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simbridge.report import save_figure as _save  # noqa: E402


def _plane(ax: plt.Axes, hist: np.ndarray, feh_edges: np.ndarray, ofe_edges: np.ndarray,
           title: str) -> None:
    ax.imshow(np.log10(1.0 + hist), origin="lower", aspect="auto", cmap="magma",
              extent=(feh_edges[0], feh_edges[-1], ofe_edges[0], ofe_edges[-1]))
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("[Fe/H]")
    ax.set_ylabel("[O/Fe]")


def plot_abundance_planes(histogram_h5: str | Path, test_h5: str | Path, out_png: str | Path,
                          n_blocks: int = 4, n_halos: int = 4) -> None:
    """Top: building blocks spanning the stellar-mass range; bottom: superposed test halos."""
    with h5py.File(histogram_h5, "r") as h5:
        ms = h5["stellar_mass_msun"][...]
        picks = np.argsort(ms)[np.linspace(0, len(ms) - 1, n_blocks).round().astype(int)]
        blocks = [(h5["histograms"][i], h5["galaxy"][i].decode(), h5["snapshot"][i].decode(),
                   ms[i], h5["infall_time_gyr"][i]) for i in picks]
        feh, ofe = h5["feh_edges"][...], h5["ofe_edges"][...]
    with h5py.File(test_h5, "r") as h5:
        n_sub = h5["n_sub"][...]
        halo_idx = np.linspace(0, len(n_sub) - 1, n_halos).round().astype(int)
        halos = [(h5["x"][i], int(n_sub[i])) for i in halo_idx]
    fig, axes = plt.subplots(2, max(n_blocks, n_halos), figsize=(3 * max(n_blocks, n_halos), 6),
                             squeeze=False)
    for ax, (hist, _gal, snap, m, t) in zip(axes[0], blocks, strict=False):
        _plane(ax, hist, feh, ofe, f"{snap}\nM*={m:.2g} Msun, t_infall={t:.1f} Gyr")
    for ax, (hist, k) in zip(axes[1], halos, strict=False):
        _plane(ax, hist, feh, ofe, f"test halo, N_sub = {k}")
    fig.tight_layout()
    _save(fig, out_png)


def plot_posterior_vs_truth(metrics_json: str | Path, out_png: str | Path) -> None:
    """Posterior median (with 68% interval) against truth for every step-2 parameter."""
    m = json.loads(Path(metrics_json).read_text())["step2"]
    names = m["parameter_names"]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6))
    for j, (ax, name) in enumerate(zip(np.atleast_1d(axes), names, strict=True)):
        pts = m["posterior_vs_truth"]
        truth = np.array(pts["truth"])[:, j]
        med = np.array(pts["median"])[:, j]
        lo, hi = np.array(pts["q16"])[:, j], np.array(pts["q84"])[:, j]
        ax.errorbar(truth, med, yerr=[med - lo, hi - med], fmt=".", ms=3, alpha=0.5, lw=0.6)
        span = [min(truth.min(), lo.min()), max(truth.max(), hi.max())]
        ax.plot(span, span, "k--", lw=0.8)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"posterior {name}")
    fig.tight_layout()
    _save(fig, out_png)


def plot_calibration(metrics_json: str | Path, out_png: str | Path) -> None:
    """TARP expected coverage, central-interval coverage and SBC rank histograms (step 2)."""
    m = json.loads(Path(metrics_json).read_text())["step2"]
    names = m["parameter_names"]
    fig, axes = plt.subplots(1, 2 + len(names), figsize=(4 * (2 + len(names)), 3.6))
    alpha, ecp = np.array(m["tarp"]["alpha"]), np.array(m["tarp"]["ecp"])
    axes[0].plot(alpha, ecp, label="TARP")
    axes[0].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[0].set_xlabel("credibility level")
    axes[0].set_ylabel("expected coverage")
    axes[0].set_title(f"TARP (max |ECP - level| = {m['tarp']['max_abs_deviation']:.3f})",
                      fontsize=8)
    levels = np.array(m["coverage"]["levels"])
    for name in names:
        axes[1].plot(levels, np.array(m["coverage"]["per_parameter"][name]), "o-", ms=3,
                     label=name)
    axes[1].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[1].set_xlabel("central credible level")
    axes[1].set_ylabel("empirical coverage")
    axes[1].legend(fontsize=7)
    ranks = np.array(m["sbc"]["ranks"])
    for j, name in enumerate(names):
        axes[2 + j].hist(ranks[:, j], bins=10, color="C0", alpha=0.8)
        axes[2 + j].set_title(f"SBC ranks: {name}\nKS p = {m['sbc']['ks_pvalues'][j]:.2f}",
                              fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)


def plot_nsub(metrics_json: str | Path, out_png: str | Path) -> None:
    """Confusion matrix and error distribution of every step-1 method."""
    m = json.loads(Path(metrics_json).read_text())["step1"]
    methods = list(m["methods"])
    fig, axes = plt.subplots(2, len(methods), figsize=(4 * len(methods), 7), squeeze=False)
    for k, name in enumerate(methods):
        r = m["methods"][name]
        cm = np.array(r["confusion_matrix"])
        labels = m["labels"]
        axes[0, k].imshow(cm, origin="lower", cmap="Blues",
                          extent=(labels[0] - 0.5, labels[-1] + 0.5, labels[0] - 0.5,
                                  labels[-1] + 0.5))
        axes[0, k].set_xlabel("estimated N_sub")
        axes[0, k].set_ylabel("true N_sub")
        axes[0, k].set_title(f"{name}: accuracy {r['accuracy']:.2f}, "
                             f"|err| <= 1: {r['within_one']:.2f}", fontsize=8)
        err = np.array(r["error_histogram"]["counts"])
        centres = np.array(r["error_histogram"]["errors"])
        axes[1, k].bar(centres, err, width=0.9)
        axes[1, k].set_xlabel("estimated - true N_sub")
        axes[1, k].set_ylabel("test halos")
    fig.tight_layout()
    _save(fig, out_png)


def plot_tuning(metrics_json: str | Path, out_png: str | Path) -> None:
    """optuna history (validation log-probability per trial) and parameter importances."""
    m = json.loads(Path(metrics_json).read_text())["tuning"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    values = [t["value"] for t in m["trials"]]
    numbers = [t["number"] for t in m["trials"]]
    axes[0].plot(numbers, values, "o", ms=4, label="trial")
    axes[0].plot(numbers, np.maximum.accumulate(values) if values else [], "-", label="best")
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel("validation log-probability")
    axes[0].legend(fontsize=7)
    imp = m.get("importances") or {}
    axes[1].barh(list(imp), list(imp.values()))
    axes[1].set_xlabel("importance (fANOVA)")
    axes[1].set_title("parameter importances" if imp else "importances need >= 2 trials",
                      fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)

"""Report figures of the generalization branch (error against distance, matrices, spectra)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simbridge.report import save_figure as _save  # noqa: E402

DISTANCE_LABELS = {
    "mean_euclidean": "mean Euclidean distance (ranked features)",
    "weighted_clustered": "weighted mean Euclidean distance (clustered features)",
    "optimal_transport": "optimal-transport distance (W1, ranked features)",
}




def _load(metrics_json: str | Path) -> dict:
    return json.loads(Path(metrics_json).read_text())


def plot_error_vs_distance(metrics_json: str | Path, kind: str, out_png: str | Path) -> None:
    """One panel per target domain: error of every model of ``kind`` against its distance,
    with the fit (and, for held-out targets, the predictive intervals)."""
    m = _load(metrics_json)["models"][kind]
    dist_kind = m["primary_distance"]
    sources, targets = m["sources"], m["targets"]
    err = np.asarray(m["error_matrix_mse_log10_mstar"])
    dist = np.asarray(m["distances"][dist_kind])
    fit = m["fits"][dist_kind]
    ncol = min(4, len(targets))
    nrow = int(np.ceil(len(targets) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow), squeeze=False,
                             sharex=True, sharey=True)
    colours = plt.cm.tab10(np.linspace(0, 1, max(len(sources), 2)))
    grid = np.linspace(0.0, dist.max() * 1.05, 50)
    held = m.get("heldout", {}).get(dist_kind)
    for j, target in enumerate(targets):
        ax = axes.flat[j]
        ax.plot(grid, fit["intercept"] + fit["slope"] * grid, color="k", lw=1,
                label="fit" if j == 0 else None)
        for i, source in enumerate(sources):
            ax.scatter(dist[i, j], err[i, j], color=colours[i], s=22,
                       label=source if j == 0 else None)
        if held and target in m["holdout_domains"]:
            for k, pair in enumerate(held["pairs"]):
                if pair["target"] == target:
                    ax.errorbar(held["distance"][k], held["predicted"][k],
                                yerr=[[held["predicted"][k] - held["lower"][k]],
                                      [held["upper"][k] - held["predicted"][k]]],
                                fmt="none", ecolor="0.6", lw=1)
            ax.set_title(f"{target} (held out)", fontsize=8)
        else:
            ax.set_title(target, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(targets):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(DISTANCE_LABELS[dist_kind], fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("MSE of log10 M*", fontsize=8)
    fig.legend(loc="upper center", ncol=min(4, len(sources) + 1), fontsize=7,
               bbox_to_anchor=(0.5, 1.0 + 0.06 / nrow))
    fig.suptitle(f"{kind}: error = {fit['intercept']:.3g} + {fit['slope']:.3g} d  "
                 f"(R^2 = {fit['r2']:.2f})",
                 fontsize=9, y=1.0 + 0.12 / nrow)
    fig.tight_layout()
    _save(fig, out_png)


def plot_distance_matrices(metrics_json: str | Path, out_png: str | Path) -> None:
    """Heat maps of every distance kind and of the error matrix of every model kind (training
    domains x target domains)."""
    m = _load(metrics_json)
    panels = [(DISTANCE_LABELS[k], np.asarray(v)) for k, v in m["distances"].items()]
    panels += [(f"{kind}: MSE of log10 M*", np.asarray(sub["error_matrix_mse_log10_mstar"]))
               for kind, sub in m["models"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (title, mat) in zip(axes[0], panels, strict=True):
        im = ax.imshow(mat, cmap="viridis")
        ax.set_xticks(range(len(m["targets"])), m["targets"], rotation=90, fontsize=6)
        ax.set_yticks(range(len(m["sources"])), m["sources"], fontsize=6)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.7)
    axes[0, 0].set_ylabel("model / training domain", fontsize=7)
    fig.tight_layout()
    _save(fig, out_png)


def plot_heldout(metrics_json: str | Path, kind: str, out_png: str | Path) -> None:
    """Predicted (with interval) against measured error of every model of ``kind`` on the
    held-out domains, one panel per distance kind."""
    m = _load(metrics_json)["models"][kind]
    dist_kinds = list(m.get("heldout", {}))
    ncol = max(1, len(dist_kinds))
    fig, axes = plt.subplots(1, ncol, figsize=(4.0 * ncol, 3.8), squeeze=False)
    if not dist_kinds:
        axes[0, 0].text(0.5, 0.5, "no held-out domains", ha="center", va="center")
        axes[0, 0].axis("off")
    for ax, dist in zip(axes[0], dist_kinds, strict=False):
        h = m["heldout"][dist]
        meas, pred = np.asarray(h["measured"]), np.asarray(h["predicted"])
        lo, hi = np.asarray(h["lower"]), np.asarray(h["upper"])
        ax.errorbar(meas, pred, yerr=[pred - lo, hi - pred], fmt="o", ms=4, lw=1)
        top = max(hi.max(), meas.max()) * 1.05
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.set_xlabel("measured MSE of log10 M*", fontsize=8)
        ax.set_ylabel("predicted MSE", fontsize=8)
        ax.set_title(f"{kind}, {dist}: {100 * h['coverage']:.0f}% inside the "
                     f"{100 * m['level']:.0f}% interval", fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)


def plot_example_spectra(spectra: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                         out_png: str | Path) -> None:
    """A few spectra of every domain (normalised at their median), one panel per domain.

    ``spectra``: domain -> (wavelength, flux (n, n_wave), log10 M* (n,)).
    """
    n = len(spectra)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.6 * n), sharex=True, squeeze=False)
    for ax, (name, (wave, flux, mass)) in zip(axes[:, 0], spectra.items(), strict=True):
        for f, lm in zip(flux, mass, strict=True):
            ax.plot(wave, f / np.median(f), lw=0.4, label=f"log M* = {lm:.2f}")
        ax.set_ylabel("F / median", fontsize=7)
        ax.set_title(name, fontsize=8, loc="left")
        ax.legend(fontsize=6, loc="upper right")
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("rest-frame wavelength (Angstrom)", fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)


TRANSFER_DISTANCE_LABELS = {
    "weighted_optimal_transport": "importance-weighted optimal-transport distance",
    "optimal_transport": "optimal-transport distance (W1)",
    "mean_euclidean": "mean Euclidean distance",
}


def plot_exsitu_transfer(metrics: Mapping, out_png: str | Path) -> None:
    """Left: error of every set against its primary distance, the fit on all sets with its
    predictive band, and the leave-one-universe-out predictions. Right: measured against
    leave-one-out predicted error per universe."""
    kind = metrics["primary_distance"]
    sets, fit = metrics["sets"], metrics["fits"][kind]
    universes = sorted({s["universe"] for s in sets} - {"in_domain_test"})
    colours = dict(zip(universes, plt.cm.tab10(np.linspace(0, 1, max(len(universes), 2))),
                       strict=False))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    d = np.array([s["distance"][kind] for s in sets])
    grid = np.linspace(0.0, d.max() * 1.08, 60)
    ax.plot(grid, fit["intercept"] + fit["slope"] * grid, color="k", lw=1,
            label=f"fit: {fit['intercept']:.3f} + {fit['slope']:.3f} d (R$^2$ = {fit['r2']:.2f})")
    for s in sets:
        u = s["universe"]
        if u == "in_domain_test":
            ax.scatter(s["distance"][kind], s["error"], marker="*", s=120, color="k",
                       label="test split (in domain)", zorder=3)
            continue
        alone = s["fraction"] >= 1.0
        ax.scatter(s["distance"][kind], s["error"], color=colours[u], s=40 if alone else 18,
                   marker="o" if alone else "s", alpha=1.0 if alone else 0.6,
                   label=u if alone else None, zorder=2)
    loo = metrics.get("leave_one_universe_out", {}).get(kind)
    if loo:
        for x in loo["universes"]:
            ax.errorbar(x["distance"], x["predicted"],
                        yerr=[[x["predicted"] - x["lower"]], [x["upper"] - x["predicted"]]],
                        fmt="_", color=colours[x["universe"]], lw=1, alpha=0.7)
        lo = min(min(x["lower"], x["measured"]) for x in loo["universes"])
        hi = max(max(x["upper"], x["measured"]) for x in loo["universes"])
        bx.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--")
        for x in loo["universes"]:
            bx.errorbar(x["predicted"], x["measured"],
                        xerr=[[x["predicted"] - x["lower"]], [x["upper"] - x["predicted"]]],
                        fmt="o", color=colours[x["universe"]], ms=5,
                        mfc=colours[x["universe"]] if x["inside"] else "white")
            bx.annotate(x["universe"], (x["predicted"], x["measured"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        bx.set_title(f"leave one universe out: {sum(x['inside'] for x in loo['universes'])}"
                     f"/{len(loo['universes'])} inside the {100 * metrics['level']:.0f}% "
                     "interval (open: outside)", fontsize=9)
    bx.set_xlabel("predicted error (fit without that universe)")
    bx.set_ylabel("measured error")
    ax.set_xlabel(TRANSFER_DISTANCE_LABELS[kind] + " to the training split")
    ax.set_ylabel("mean |posterior mean - truth| per galaxy pixel")
    ax.set_title(f"{metrics['model']}: squares mix a universe with the test split", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    _save(fig, out_png)

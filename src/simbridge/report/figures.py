"""Report figures: example maps, global ex-situ fractions, balancing and splits."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from simbridge.io import atomic_output, read_table  # noqa: E402

_PANELS = (
    # (title, colormap, transform of the channel, symmetric colour range)
    ("log10 Σ* [Msun kpc$^{-2}$]", "magma", "log", False),
    ("v$_{los}$ [km s$^{-1}$]", "RdBu_r", "linear", True),
    ("σ$_{los}$ [km s$^{-1}$]", "viridis", "linear", False),
    ("age [Gyr]", "cividis", "linear", False),
    ("log10 Z", "plasma", "log", False),
)


def choose_example_galaxies(manifest: pd.DataFrame, n: int,
                            split: str | None = None) -> pd.DataFrame:
    """Extracted galaxies of the first snapshot spanning the range of global ex-situ fraction.

    With ``split``, only galaxies of that split (``first_sample`` then indexes its file).
    """
    done = manifest[manifest["status"] == "extracted"]
    if split is not None:
        done = done[done["split"] == split]
    if done.empty:
        raise ValueError("the manifest holds no extracted galaxy to plot")
    done = done[done["snapshot"] == done["snapshot"].iloc[0]].sort_values("exsitu_fraction_global")
    picks = np.unique(np.linspace(0, len(done) - 1, min(n, len(done))).round().astype(int))
    return done.iloc[picks]


def plot_example_maps(maps_h5: str | Path, manifest_csv: str | Path, out_png: str | Path,
                      n_galaxies: int = 4, split: str | None = None) -> None:
    """Grid of the five condition maps and the ex-situ map for a few galaxies (first view).

    ``maps_h5`` is a split file when ``split`` is given (the manifest's first_sample indexes it).
    """
    manifest = read_table(manifest_csv)
    picks = choose_example_galaxies(manifest, n_galaxies, split)
    ncol = len(_PANELS) + 1
    fig, axes = plt.subplots(len(picks), ncol, figsize=(2.6 * ncol, 2.5 * len(picks)),
                             squeeze=False, constrained_layout=True)
    with h5py.File(maps_h5, "r") as h5:
        for row, (_, gal) in zip(axes, picks.iterrows(), strict=True):
            k = int(gal["first_sample"])
            cond = h5["conditions"][k]
            target = h5["exsitu_fraction_map"][k]
            mask = h5["galaxy_mask"][k].astype(bool)
            hw = float(h5["half_width_kpc"][k])
            extent = (-hw, hw, -hw, hw)
            for ax, img, (title, cmap, transform, symmetric) in zip(row, cond, _PANELS,
                                                                     strict=False):
                data = np.where(mask, img, np.nan)
                if transform == "log":
                    with np.errstate(divide="ignore", invalid="ignore"):
                        data = np.where(data > 0, np.log10(data), np.nan)
                finite = data[np.isfinite(data)]
                lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
                if symmetric:
                    lim = max(abs(lo), abs(hi), 1e-6)
                    lo, hi = -lim, lim
                im = ax.imshow(data, origin="lower", extent=extent, cmap=cmap, vmin=lo, vmax=hi)
                fig.colorbar(im, ax=ax, shrink=0.8)
                ax.set_title(title, fontsize=8)
            im = row[-1].imshow(np.where(mask, target, np.nan), origin="lower", extent=extent,
                                cmap="coolwarm", vmin=0, vmax=1)
            fig.colorbar(im, ax=row[-1], shrink=0.8)
            row[-1].set_title("ex-situ fraction (target)", fontsize=8)
            row[0].set_ylabel(
                f"subhalo {int(gal['subhalo_id'])}, snap {int(gal['snapshot'])}\n"
                f"M*={gal['stellar_mass_msun']:.2g} Msun, "
                f"f_ex={gal['exsitu_fraction_global']:.2f}\ny [kpc]",
                fontsize=7,
            )
            for ax in row:
                ax.tick_params(labelsize=6)
        for ax in axes[-1]:
            ax.set_xlabel("x [kpc]", fontsize=7)
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_exsitu_fraction_vs_mass(manifest_csv: str | Path, out_png: str | Path) -> None:
    """Global ex-situ fraction against stellar mass, per snapshot, with a running median."""
    manifest = read_table(manifest_csv)
    done = manifest[manifest["status"] == "extracted"]
    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    for snap, grp in done.groupby("snapshot", sort=False):
        logm = np.log10(grp["stellar_mass_msun"].to_numpy())
        fex = grp["exsitu_fraction_global"].to_numpy()
        z = grp["redshift"].iloc[0]
        pts = ax.scatter(logm, fex, s=12, alpha=0.6, label=f"snapshot {snap} (z={z:.2f})")
        if len(logm) >= 8:
            edges = np.quantile(logm, np.linspace(0, 1, 7))
            idx = np.clip(np.digitize(logm, edges[1:-1]), 0, 5)
            centres = [logm[idx == i].mean() for i in range(6) if (idx == i).any()]
            medians = [np.median(fex[idx == i]) for i in range(6) if (idx == i).any()]
            ax.plot(centres, medians, color=pts.get_facecolor()[0], lw=2)
    n_skipped = int((manifest["status"] == "skipped").sum())
    ax.set_xlabel("log10 stellar mass [Msun]")
    ax.set_ylabel("global ex-situ mass fraction")
    ax.set_ylim(0, 1)
    ax.set_title(f"{len(done)} galaxies extracted, {n_skipped} skipped (see manifest)",
                 fontsize=9)
    ax.legend(fontsize=8)
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


_SPLIT_COLOURS = {"train": "#4C72B0", "validation": "#DD8452", "test": "#55A868"}


def plot_balancing(summary_json: str | Path, manifest_csv: str | Path,
                   out_png: str | Path) -> None:
    """Before/after balancing histograms of global ex-situ fraction, views per bin, splits."""
    summary = json.loads(Path(summary_json).read_text())
    manifest = read_table(manifest_csv)
    edges = np.asarray(summary["bin_edges"])
    centres, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)

    ax = axes[0]
    before = np.asarray(summary["samples_per_bin_unbalanced"])
    after = np.asarray(summary["samples_per_bin"])
    ax.bar(centres - widths / 4, before, width=widths / 2, color="0.6",
           label=f"before: {summary['min_views']} views each ({before.sum()} samples)")
    ax.bar(centres + widths / 4, after, width=widths / 2, color="#C44E52",
           label=f"after balancing ({after.sum()} samples)")
    ax.set_xlabel("global ex-situ mass fraction")
    ax.set_ylabel("samples per bin")
    ax.set_title(f"{summary['n_galaxies']} galaxies, all snapshots", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[1]
    counts = np.asarray(summary["galaxies_per_bin"])
    views = np.asarray(summary["views_per_galaxy"])
    ax.bar(centres, views, width=widths * 0.9, color="#8172B3")
    for x, v, c in zip(centres, views, counts, strict=True):
        if c:
            ax.text(x, v, f"{c}", ha="center", va="bottom", fontsize=7)
    ax.axhline(summary["max_views"], color="k", ls=":", lw=1, label="max_views")
    ax.set_xlabel("global ex-situ mass fraction")
    ax.set_ylabel("lines of sight per galaxy")
    ax.set_title("views per galaxy (numbers: galaxies in the bin)", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[2]
    done = manifest[manifest["status"] == "extracted"]
    bottom = np.zeros(len(centres))
    for split, colour in _SPLIT_COLOURS.items():
        part = done[done["split"] == split]
        per_bin = np.bincount(part["exsitu_bin"].to_numpy(dtype=np.int64),
                              weights=part["n_views"].to_numpy(dtype=np.float64),
                              minlength=len(centres))[:len(centres)]
        ax.bar(centres, per_bin, width=widths * 0.9, bottom=bottom, color=colour,
               label=f"{split}: {part['n_views'].sum()} samples, {len(part)} galaxies")
        bottom += per_bin
    ax.set_xlabel("global ex-situ mass fraction")
    ax.set_ylabel("samples per bin")
    ax.set_title("samples per split (grouped by physical galaxy)", fontsize=9)
    ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xlim(edges[0], edges[-1])
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

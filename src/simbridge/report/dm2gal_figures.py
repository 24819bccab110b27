"""Report figures of the dm2gal branch: training curves, precision-recall, power spectra and
slices of the dark matter, the true, predicted and HOD galaxy fields."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from simbridge.report import save_figure as _save  # noqa: E402


def plot_dm2gal_figures(metrics_path: str, predictions_path: str, histories: list[str],
                        outputs: dict[str, str]) -> None:
    """Write the four figures named in ``outputs``."""
    metrics = json.loads(Path(metrics_path).read_text())
    fig, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3), squeeze=False)
    for ax, path in zip(axes[0], histories, strict=True):
        h = pd.read_csv(path)
        ax.plot(h["epoch"], h["train_loss"], label="training")
        ax.plot(h["epoch"], h["val_loss"], label="validation")
        ax.set_title(Path(path).stem.removesuffix("_history"), fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    _save(fig, outputs["training_curves"])

    with h5py.File(predictions_path, "r") as fh:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for arch, m in metrics["classifiers"].items():
            ax.plot(fh[f"{arch}/pr_recall"][()], fh[f"{arch}/pr_precision"][()],
                    label=f"{arch} (AP {m['average_precision']:.2f})")
            ax.plot([m["test"]["recall"]], [m["test"]["precision"]], "o", ms=5)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("phase 1 on the test runs (dot: chosen threshold)", fontsize=9)
        ax.legend(fontsize=7)
        _save(fig, outputs["precision_recall"])

        runs = list(metrics["power_spectra"])
        fig, axes = plt.subplots(3, len(runs), figsize=(4 * len(runs), 8), squeeze=False,
                                 sharex=True)
        for j, run in enumerate(runs):
            p = metrics["power_spectra"][run]
            k = np.asarray(p["k_h_mpc"])
            tag = " (cross-prediction)" if p["cross_prediction"] else ""
            for key, label in (("pk_truth", "truth"), ("pk_prediction", "two-phase"),
                               ("pk_hod", "HOD")):
                axes[0, j].loglog(k, p[key], label=label)
            axes[0, j].set_title(f"{run}{tag}", fontsize=9)
            axes[0, j].set_ylabel("P(k) [(Mpc/h)^3]")
            axes[0, j].legend(fontsize=7)
            axes[1, j].semilogx(k, p["ratio_prediction"], label="two-phase / truth")
            axes[1, j].semilogx(k, p["ratio_hod"], label="HOD / truth")
            axes[1, j].axhspan(0.9, 1.1, color="0.85")
            axes[1, j].set_ylabel("ratio")
            axes[1, j].legend(fontsize=7)
            axes[2, j].semilogx(k, p["r_prediction"], label="two-phase")
            axes[2, j].semilogx(k, p["r_hod"], label="HOD")
            axes[2, j].set_ylabel("r(k)")
            axes[2, j].set_xlabel("k [h/Mpc]")
            axes[2, j].legend(fontsize=7)
        _save(fig, outputs["power_spectra"])

        fig, axes = plt.subplots(len(runs), 4, figsize=(12, 3 * len(runs)), squeeze=False)
        for i, run in enumerate(runs):
            for j, name in enumerate(("dm_density", "truth", "prediction", "hod")):
                field = fh[f"fields/{run}/{name}"][()]
                n = field.shape[0]
                sl = field[:, :, n // 2 - 2:n // 2 + 2].sum(axis=2)
                img = np.log10(np.maximum(sl, 1e-2)) if name == "dm_density" else sl
                axes[i, j].imshow(img.T, origin="lower", cmap="magma")
                axes[i, j].set_title(f"{run}: {name}", fontsize=8)
                axes[i, j].set_xticks([])
                axes[i, j].set_yticks([])
        _save(fig, outputs["slices"])

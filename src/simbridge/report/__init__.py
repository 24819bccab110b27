"""Figures for the Snakemake HTML report."""

from __future__ import annotations

from pathlib import Path

from simbridge.io import atomic_output


def save_figure(fig, out_png: str | Path) -> None:
    """Write a matplotlib figure as PNG (110 dpi, tight) under a temporary name; close it."""
    import matplotlib.pyplot as plt

    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)

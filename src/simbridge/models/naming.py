"""Names of the models of a sweep (light module: the Snakefile imports it without torch)."""

from __future__ import annotations


def model_name(latent_dim: int, beta: float) -> str:
    """Name of one model of the sweep, e.g. 'z10_beta7e-05'."""
    return f"z{int(latent_dim)}_beta{float(beta):g}"

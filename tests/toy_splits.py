"""Toy split files in the dataset layout, for model tests (small, fast, with a learnable map)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_toy_split(path: Path, n: int, npix: int = 16, seed: int = 0) -> Path:
    """A split file of n samples: a round galaxy whose ex-situ fraction rises with radius at a
    per-sample rate; metallicity falls where the ex-situ fraction is high."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:npix, :npix] - (npix - 1) / 2
    r = np.hypot(x, y) / (npix / 2)
    mask = np.broadcast_to(r < 0.9, (n, npix, npix)).astype(np.uint8)
    rate = rng.uniform(0.2, 1.0, n)[:, None, None]
    frac = np.clip(rate * r[None] + 0.05 * rng.standard_normal((n, npix, npix)), 0, 1)
    frac = (frac * mask).astype(np.float32)
    cond = np.zeros((n, 5, npix, npix), np.float32)
    cond[:, 0] = 1e8 * np.exp(-3 * r)[None] * rng.uniform(0.5, 2, (n, 1, 1))
    cond[:, 1] = 200 * x[None] / npix * rng.uniform(-1, 1, (n, 1, 1))
    cond[:, 2] = 50 + 100 * frac
    cond[:, 3] = 5 + 6 * frac
    cond[:, 4] = 0.02 * (1 - 0.8 * frac)
    cond *= mask[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        one = {"maxshape": (None, 5, npix, npix), "chunks": (1, 5, npix, npix)}
        h5.create_dataset("conditions", data=cond, compression="lzf", **one)
        one = {"maxshape": (None, npix, npix), "chunks": (1, npix, npix)}
        h5.create_dataset("exsitu_fraction_map", data=frac, **one)
        h5.create_dataset("galaxy_mask", data=mask, **one)
        h5.create_dataset("particle_count", data=mask.astype(np.int32) * 5)
        h5.create_dataset("subhalo_id", data=np.arange(n) // 2)
        h5.create_dataset("snapshot", data=np.full(n, 99))
        h5.create_dataset("exsitu_fraction_global", data=rate[:, 0, 0] / 2)
    return path


def toy_settings(**cvae) -> dict:
    """Model settings of a tiny cVAE and flow (seconds on a CPU)."""
    return {
        "seed": 7, "latent_dim": 3, "beta": 7e-5, "channels": [4, 8], "summary_dim": 6,
        "augment": True,
        "cvae": {"epochs": 4, "batch_size": 8, "learning_rate": 2e-3, "patience": 10,
                 "kl_warmup_epochs": 1, **cvae},
        "flow": {"transforms": 2, "hidden_features": [16], "latent_draws": 2, "epochs": 3,
                 "batch_size": 16, "learning_rate": 1e-3, "patience": 5},
    }

"""Training of the two phases on the project's loop (simbridge.models.training.fit).

Inputs are log10(1 + delta) of the N-body dark matter, standardised with the training runs'
mean and spread; a sample is a periodic sub-box with ``padding`` voxels of context on each
side; losses count only the interior. Each epoch draws, from (seed, epoch), a periodic shift of
the tiling of every training run and one of the 48 cube symmetries per sample.

* Phase 1 (classifier): weighted binary cross-entropy (positive weight favours recall) of
  "this voxel holds a galaxy".
* Phase 2 (regressor): Poisson negative log-likelihood of the count (0 included) on the
  candidate voxels, those that hold galaxies or whose dark-matter density is in the top
  ``regressor_candidate_fraction`` of the training runs' voxels: a stand-in, fixed before
  training, for the voxels phase 1 flags, on which it predicts (so it can undo false flags).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from simbridge.config import config_hash
from simbridge.dataset.subboxes import (
    CUBE_SYMMETRIES,
    apply_symmetry,
    periodic_subbox,
    tile_corners,
)
from simbridge.errors import SimBridgeConfigError
from simbridge.extract.voxels import read_run_grids
from simbridge.models.dm2gal.networks import build_network
from simbridge.models.training import (
    FitSettings,
    derive_seed,
    fit,
    save_torch_atomic,
    select_device,
)

log = logging.getLogger(__name__)


def network_input(dm_density: np.ndarray) -> np.ndarray:
    """log10(1 + delta), floored at 1e-2 of the mean density."""
    return np.log10(np.maximum(dm_density, 1e-2))


def load_runs(files: list[str]) -> dict[str, dict[str, Any]]:
    """{run: grids} of the voxel files."""
    runs = {}
    for path in files:
        grids = read_run_grids(path)
        runs[grids["run"]] = grids
    return runs


def _samples(runs: dict, names: list[str], size: int, pad: int, rng: np.random.Generator | None,
             mean: float, std: float) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for run in names:
        x = (network_input(runs[run]["dm_density"]) - mean) / std
        y = runs[run]["galaxy_count"]
        n = x.shape[0]
        shift = tuple(rng.integers(0, n, 3)) if rng is not None else (0, 0, 0)
        for corner in tile_corners(n, size, shift):
            xs, ys = periodic_subbox(x, corner, size, pad), periodic_subbox(y, corner, size, pad)
            if rng is not None:
                sym = int(rng.integers(len(CUBE_SYMMETRIES)))
                xs, ys = apply_symmetry(xs, sym), apply_symmetry(ys, sym)
            out.append((np.ascontiguousarray(xs), np.ascontiguousarray(ys)))
    return out


def _batches(samples: list, batch_size: int, device: torch.device):
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        x = torch.from_numpy(np.stack([s[0] for s in chunk])[:, None].astype(np.float32))
        y = torch.from_numpy(np.stack([s[1] for s in chunk]).astype(np.float32))
        yield x.to(device), y.to(device)


def interior(t: Tensor, pad: int) -> Tensor:
    """The sub-box without its padding (last three axes)."""
    if pad == 0:
        return t
    return t[..., pad:-pad, pad:-pad, pad:-pad]


def make_step(phase: str, pad: int, positive_weight: float, candidate_level: float = np.inf):
    """The loss of one batch for fit(): weighted BCE (classifier) or Poisson NLL on the
    candidate voxels (standardised input >= ``candidate_level``, or holding galaxies)."""

    def step(model: nn.Module, batch, generator, epoch) -> dict[str, Tensor]:
        x, y = batch
        out = interior(model(x), pad)
        y = interior(y, pad)
        if phase == "classifier":
            target = (y > 0).float()
            loss = nn.functional.binary_cross_entropy_with_logits(
                out, target, pos_weight=torch.tensor(positive_weight, device=out.device))
        else:
            mask = ((y > 0) | (interior(x[:, 0], pad) >= candidate_level)).float()
            nll = nn.functional.poisson_nll_loss(out, y, log_input=True, full=False,
                                                 reduction="none")
            loss = (nll * mask).sum() / mask.sum().clamp(min=1.0)
        return {"loss": loss, "n": torch.tensor(x.shape[0])}

    return step


def input_normalisation(runs: dict, names: list[str]) -> tuple[float, float]:
    """Mean and spread of the network input over the training runs."""
    values = np.concatenate([network_input(runs[r]["dm_density"]).ravel() for r in names])
    return float(values.mean()), float(max(values.std(), 1e-6))


def train_phase(phase: str, architecture: str, grid_files: list[str], splits: dict,
                settings: dict, seed: int, out_path: str, history_path: str,
                checkpoint_dir: str) -> dict[str, Any]:
    """Train one network of one phase and save its best weights with what prediction needs."""
    if phase not in ("classifier", "regressor"):
        raise SimBridgeConfigError(f"unknown dm2gal phase {phase!r}")
    model_cfg = settings["model"]
    size, pad = int(settings["subbox_size"]), int(settings["padding"])
    levels = len(model_cfg["channels"])
    if architecture == "r2unet" and (size + 2 * pad) % 2 ** (levels - 1):
        raise SimBridgeConfigError(
            f"dm2gal.subbox_size + 2 dm2gal.padding = {size + 2 * pad} must be divisible by "
            f"2^(levels - 1) = {2 ** (levels - 1)} (dm2gal.model.channels has {levels} levels)")
    device = select_device(model_cfg.get("device", "auto"))
    runs = load_runs(grid_files)
    mean, std = input_normalisation(runs, splits["train"])
    run_seed = derive_seed(seed, "dm2gal", phase, architecture)
    torch.manual_seed(run_seed)
    model = build_network(architecture, model_cfg).to(device)
    fit_settings = FitSettings.from_config(model_cfg, run_seed)
    val = _samples(runs, splits["validation"], size, pad, None, mean, std)
    bs = int(model_cfg["batch_size"])

    def train_batches(epoch: int):
        rng = np.random.default_rng(derive_seed(run_seed, "samples", epoch))
        samples = _samples(runs, splits["train"], size, pad, rng, mean, std)
        order = rng.permutation(len(samples))
        return _batches([samples[i] for i in order], bs, device)

    values = np.concatenate([network_input(runs[r]["dm_density"]).ravel()
                             for r in splits["train"]])
    level = (np.quantile(values, 1.0 - float(model_cfg["regressor_candidate_fraction"]))
             - mean) / std
    step = make_step(phase, pad, float(model_cfg["positive_weight"]), float(level))
    key = {"phase": phase, "architecture": architecture, "settings": settings, "seed": seed,
           "splits": {k: splits[k] for k in ("train", "validation")}}
    result = fit(model, step, train_batches, lambda: _batches(val, bs, device), fit_settings,
                 checkpoint_dir, config_hash(key), desc=f"dm2gal {phase} {architecture}")
    Path(history_path).parent.mkdir(parents=True, exist_ok=True)
    result.history.to_csv(history_path, index=False)
    payload = {"state": result.best_state, "phase": phase, "architecture": architecture,
               "model_settings": model_cfg, "input_mean": mean, "input_std": std,
               "subbox_size": size, "padding": pad, "best_epoch": result.best_epoch,
               "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
               "splits": json.loads(json.dumps({k: splits[k] for k in ("train", "validation",
                                                                         "test")}))}
    save_torch_atomic(payload, out_path)
    return payload


def load_network(path: str) -> tuple[nn.Module, dict]:
    """A saved phase network (eval mode, CPU) and its payload."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = build_network(payload["architecture"], payload["model_settings"])
    model.load_state_dict(payload["state"])
    model.eval()
    return model, payload


@torch.no_grad()
def predict_grid(model: nn.Module, payload: dict, dm_density: np.ndarray, batch_size: int = 4
                 ) -> np.ndarray:
    """The network's raw output (logit or log-rate) on a whole periodic grid, tiled."""
    size, pad = payload["subbox_size"], payload["padding"]
    x = (network_input(dm_density) - payload["input_mean"]) / payload["input_std"]
    n = x.shape[0]
    corners = tile_corners(n, size)
    out = np.zeros_like(x, dtype=np.float32)
    for start in range(0, len(corners), batch_size):
        cs = corners[start:start + batch_size]
        xb = torch.from_numpy(np.stack([periodic_subbox(x, c, size, pad) for c in cs])[:, None]
                              .astype(np.float32))
        yb = interior(model(xb), pad).numpy()
        for c, block in zip(cs, yb, strict=True):
            out[c[0]:c[0] + size, c[1]:c[1] + size, c[2]:c[2] + size] = block
    return out

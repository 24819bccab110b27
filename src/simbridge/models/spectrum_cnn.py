"""A 1D convolutional network from a galaxy spectrum to its log stellar mass.

The next step the generalization work proposes (random forests cannot extrapolate). Input: the
log10-flux spectrum, standardised per pixel with the training galaxies' mean and spread (kept in
the model); output: log10 M*, standardised with the training targets. Trained on the project's
loop (:func:`simbridge.models.training.fit`: a checkpoint every epoch, resume after a kill, early
stopping on a seeded validation part of the training galaxies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from simbridge.config import config_hash
from simbridge.extract.spectra import SpectraSet
from simbridge.io import atomic_output
from simbridge.models.training import (
    FitSettings,
    batches_of,
    derive_seed,
    epoch_order,
    fit,
    save_torch_atomic,
)


class SpectrumCNN(nn.Module):
    """Strided 1D convolutions, adaptive pooling and a small MLP head; stores its scalings."""

    def __init__(self, n_wave: int, channels: Sequence[int], kernel_size: int,
                 hidden: int = 32, pooled: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv1d(c_in, c, kernel_size, stride=2, padding=kernel_size // 2),
                       nn.GroupNorm(1, c), nn.GELU()]
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(pooled))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * pooled, hidden), nn.GELU(),
                                  nn.Linear(hidden, 1))
        self.register_buffer("x_mean", torch.zeros(n_wave))
        self.register_buffer("x_std", torch.ones(n_wave))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def forward(self, log_flux: Tensor) -> Tensor:
        """Standardised prediction (use :meth:`predict_log_mass` for log10 M*)."""
        x = (log_flux - self.x_mean) / self.x_std
        return self.head(self.features(x[:, None, :]))[:, 0]

    @torch.no_grad()
    def predict_log_mass(self, log_flux: Tensor, batch_size: int = 256) -> Tensor:
        self.eval()
        out = [self(log_flux[i:i + batch_size]) for i in range(0, len(log_flux), batch_size)]
        return torch.cat(out) * self.y_std + self.y_mean


def _split_validation(n: int, fraction: float, seed: int, name: str) -> tuple[NDArray, NDArray]:
    order = np.random.default_rng(derive_seed(seed, "cnn-validation", name)).permutation(n)
    n_val = max(1, int(round(fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_spectrum_cnn(spectra: SpectraSet, cfg: Mapping[str, Any], seed: int,
                       checkpoint_dir: str | Path, out_path: str | Path,
                       history_csv: str | Path | None = None) -> dict[str, Any]:
    """Train the CNN of one domain on its training galaxies and save it (torch payload)."""
    from simbridge.models.generalization import features_and_target

    x_all, y_all = features_and_target(spectra, "train")
    train, val = _split_validation(len(y_all), float(cfg["validation_fraction"]), seed,
                                   spectra.name)
    x = torch.as_tensor(x_all, dtype=torch.float32)
    y = torch.as_tensor(y_all, dtype=torch.float32)
    torch.manual_seed(derive_seed(seed, "cnn-init", spectra.name))
    arch = {"n_wave": x.shape[1], "channels": list(cfg["channels"]),
            "kernel_size": int(cfg["kernel_size"])}
    model = SpectrumCNN(**arch)
    model.x_mean.copy_(x[train].mean(0))
    model.x_std.copy_(x[train].std(0).clamp_min(1e-6))
    model.y_mean.copy_(y[train].mean())
    model.y_std.copy_(y[train].std().clamp_min(1e-6))
    settings = FitSettings.from_config(dict(cfg), seed=derive_seed(seed, "cnn", spectra.name))
    bs = settings.batch_size

    def step(m: nn.Module, idx: NDArray, generator: torch.Generator, epoch: int | None
             ) -> dict[str, Tensor]:
        target = (y[idx] - m.y_mean) / m.y_std
        loss = torch.mean((m(x[idx]) - target) ** 2)
        return {"loss": loss, "n": torch.tensor(len(idx))}

    def train_batches(epoch: int):
        order = train[epoch_order(len(train), settings.seed, epoch)]
        return batches_of(len(order), bs, order)

    def val_batches():
        return batches_of(len(val), bs, val)

    identity = {"cfg": dict(cfg), "seed": seed, "domain": spectra.name,
                "n": int(len(y)), "y_sum": float(y.sum())}
    result = fit(model, step, train_batches, val_batches, settings, checkpoint_dir,
                 config_hash(identity), desc=f"CNN {spectra.name}")
    model.load_state_dict(result.best_state)
    payload = {"kind": "cnn", "domain": spectra.name, "architecture": arch,
               "state_dict": model.state_dict(), "best_epoch": result.best_epoch,
               "wavelength_angstrom": spectra.wavelength_angstrom, "n_train": int(len(train)),
               "n_validation": int(len(val))}
    save_torch_atomic(payload, out_path)
    if history_csv is not None:
        with atomic_output(history_csv) as tmp:
            result.history.to_csv(tmp, index=False)
    return payload


def load_spectrum_cnn(payload: Mapping[str, Any]) -> SpectrumCNN:
    """The network of a saved payload."""
    model = SpectrumCNN(**payload["architecture"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def predict_cnn(payload: Mapping[str, Any], spectra: SpectraSet, role: str | None = "test"
                ) -> tuple[NDArray, NDArray]:
    """(predicted, true) log stellar mass of a CNN payload on one role of a domain."""
    from simbridge.models.generalization import features_and_target

    x, y = features_and_target(spectra, role)
    model = load_spectrum_cnn(payload)
    pred = model.predict_log_mass(torch.as_tensor(x, dtype=torch.float32)).numpy()
    return pred.astype(np.float64), y

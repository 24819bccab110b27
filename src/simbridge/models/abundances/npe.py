"""Neural posterior estimation with sbi 0.27 on our own train/validation split.

sbi's trainers draw their own random validation subset from the simulations they are given;
:class:`FixedSplitNPE` (and :class:`FixedSplitMNPE`) use ours instead: the first ``n_train``
appended rows train, the rest validate (early stopping), so validation galaxies never train.

Killed jobs: sbi trains in memory without checkpoints. Every draw of a training run (weights,
batch order) comes from ``torch.manual_seed`` set here from (seed, name), outputs are written
under a temporary name and renamed, so a killed job leaves no output and its rerun retrains
from scratch to the same result. Note: sbi 0.27's ``train(max_num_epochs=m)`` runs m + 1
epochs (its loop is ``while epoch <= max``) and refuses m = 0; :func:`train_npe` passes
``max(max_epochs - 1, 1)``, so max_epochs epochs at most (two when max_epochs is 1).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils import data

from simbridge.errors import SimBridgeConfigError
from simbridge.models.abundances.nets import PlaneEmbedding
from simbridge.models.training import derive_seed, save_torch_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NpeSettings:
    """Flow, embedding and optimizer settings of one NPE (tuned by optuna)."""

    learning_rate: float
    batch_size: int
    hidden_features: int
    num_transforms: int
    summary_dim: int
    channels: tuple[int, ...]
    max_epochs: int
    stop_after_epochs: int
    input_pool: int = 1

    @classmethod
    def from_config(cls, inference: dict[str, Any], best: dict[str, Any] | None = None
                    ) -> NpeSettings:
        """The config's inference settings, overridden by the tuned ``best`` ones."""
        values = {"learning_rate": inference["learning_rate"],
                  "batch_size": inference["batch_size"],
                  "hidden_features": inference["hidden_features"],
                  "num_transforms": inference["num_transforms"],
                  "summary_dim": inference["summary_dim"],
                  "channels": tuple(inference["embedding_channels"]),
                  "max_epochs": inference["max_epochs"],
                  "stop_after_epochs": inference["stop_after_epochs"],
                  "input_pool": inference["embedding_input_pool"]}
        values.update(best or {})
        values["channels"] = tuple(values["channels"])
        return cls(**values)


def _fixed_split_loaders(trainer: Any, starting_round: int, training_batch_size: int
                         ) -> tuple[data.DataLoader, data.DataLoader]:
    theta, x, masks = trainer.get_simulations(starting_round)
    dataset = data.TensorDataset(theta, x, masks)
    n, n_train = theta.shape[0], trainer.n_train
    if not 0 < n_train < n:
        raise SimBridgeConfigError(f"need training and validation rows (got {n_train} of {n})")
    trainer.train_indices = torch.arange(n_train)
    trainer.val_indices = torch.arange(n_train, n)
    train = data.DataLoader(dataset, batch_size=min(training_batch_size, n_train),
                            drop_last=True,
                            sampler=data.SubsetRandomSampler(trainer.train_indices.tolist()))
    val = data.DataLoader(dataset, batch_size=min(training_batch_size, n - n_train),
                          sampler=trainer.val_indices.tolist())  # in order, only these rows
    return train, val


class _NoTracker:
    """sbi tracker that records nothing: sbi's default writes TensorBoard files to
    ./sbi-logs of the working directory; the losses go to the model's metadata instead."""

    log_dir = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Drop the metric."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Drop the metrics."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Drop the parameters."""

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Drop the figure."""

    def flush(self) -> None:
        """Nothing to flush."""


def _trainer_classes() -> tuple[type, type]:
    from sbi.inference import MNPE, NPE

    class FixedSplitNPE(NPE):
        """NPE whose validation rows are the last appended ones (our validation split)."""

        n_train = 0

        def get_dataloaders(self, starting_round=0, training_batch_size=200,
                            validation_fraction=0.1, resume_training=False,
                            dataloader_kwargs=None):
            return _fixed_split_loaders(self, starting_round, training_batch_size)

    class FixedSplitMNPE(MNPE):
        """MNPE (continuous + discrete parameters) on our validation split."""

        n_train = 0

        def get_dataloaders(self, starting_round=0, training_batch_size=200,
                            validation_fraction=0.1, resume_training=False,
                            dataloader_kwargs=None):
            return _fixed_split_loaders(self, starting_round, training_batch_size)

    return FixedSplitNPE, FixedSplitMNPE


def box_prior(low: np.ndarray, high: np.ndarray, device: str = "cpu") -> Any:
    """sbi BoxUniform over [low, high] per parameter."""
    from sbi.utils import BoxUniform

    return BoxUniform(torch.as_tensor(low, dtype=torch.float32),
                      torch.as_tensor(high, dtype=torch.float32), device=device)


def train_npe(theta_train: Tensor, x_train: Tensor, theta_val: Tensor, x_val: Tensor,
              prior: Any, settings: NpeSettings, embedding: nn.Module, seed: int, name: str,
              mixed: bool = False, device: str = "cpu", model: str = "nsf"
              ) -> tuple[Any, dict[str, Any]]:
    """Train an NPE (sbi flow ``model``, default NSF; ``mixed``: an MNPE) with ``embedding``;
    return (posterior, summary).

    Trains on ``device`` (the prior must live there too); the returned posterior is on the
    CPU. The summary holds sbi's per-epoch training and validation losses.
    """
    from sbi.neural_nets import posterior_nn

    npe_cls, mnpe_cls = _trainer_classes()
    torch.manual_seed(derive_seed(seed, name))
    if mixed:
        estimator = posterior_nn(model="mnpe", hidden_features=settings.hidden_features,
                                 num_transforms=settings.num_transforms,
                                 embedding_net=embedding, z_score_x="none")
        trainer = mnpe_cls(prior=prior, density_estimator=estimator, device=device,
                           tracker=_NoTracker(), show_progress_bars=False)
    else:
        estimator = posterior_nn(model=model, hidden_features=settings.hidden_features,
                                 num_transforms=settings.num_transforms,
                                 embedding_net=embedding, z_score_x="none")
        trainer = npe_cls(prior=prior, density_estimator=estimator, device=device,
                          tracker=_NoTracker(), show_progress_bars=False)
    trainer.n_train = len(theta_train)
    trainer.append_simulations(torch.cat([theta_train, theta_val]), torch.cat([x_train, x_val]))
    density = trainer.train(training_batch_size=settings.batch_size,
                            learning_rate=settings.learning_rate,
                            stop_after_epochs=settings.stop_after_epochs,
                            max_num_epochs=max(settings.max_epochs - 1, 1))
    posterior = trainer.build_posterior(density)
    posterior.to("cpu")
    s = trainer._summary  # sbi's record of the run (losses per epoch)
    summary = {"epochs_trained": int(s["epochs_trained"][-1]),
               "best_validation_loss": float(s["best_validation_loss"][-1]),
               "training_loss": [float(v) for v in s["training_loss"]],
               "validation_loss": [float(v) for v in s["validation_loss"]],
               "n_train": int(len(theta_train)), "n_validation": int(len(theta_val))}
    log.info("%s: %d epochs, best validation loss %.4f", name, summary["epochs_trained"],
             summary["best_validation_loss"])
    return posterior, summary


def plane_embedding(n_pix: int, settings: NpeSettings, n_extra: int = 0) -> PlaneEmbedding:
    """The CNN embedding of the configured size."""
    return PlaneEmbedding(n_pix, list(settings.channels), settings.summary_dim, n_extra,
                          settings.input_pool)


@torch.no_grad()
def mean_log_prob(posterior: Any, theta: Tensor, x: Tensor, batch: int = 512) -> float:
    """Mean log q(theta | x) of the posterior's density estimator over rows (validation)."""
    est = posterior.posterior_estimator
    est.eval()
    total = 0.0
    for start in range(0, len(theta), batch):
        t, c = theta[start:start + batch], x[start:start + batch]
        total += float(est.log_prob(t.unsqueeze(0), condition=c).sum())
    return total / len(theta)


def save_posterior(path: str | Path, posterior: Any, meta: dict[str, Any]) -> None:
    """The whole sbi posterior (estimator and prior, pickled) plus metadata, atomically."""
    save_torch_atomic({"posterior": posterior, "meta": meta}, path)


def load_posterior(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(posterior, meta) written by :func:`save_posterior`."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    return payload["posterior"], payload["meta"]


def settings_dict(settings: NpeSettings) -> dict[str, Any]:
    """JSON-ready settings."""
    d = asdict(settings)
    d["channels"] = list(d["channels"])
    return d

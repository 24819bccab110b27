"""A training loop that checkpoints every epoch, resumes after a kill and stops early.

Every random draw of an epoch (sample order, augmentation, reparametrization noise) derives from
(seed, epoch), and the checkpoint holds the model, optimizer and scheduler states, so a run
killed after epoch k and rerun continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from simbridge.errors import SimBridgeConfigError
from simbridge.io import atomic_output
from simbridge.logs import progress_logger

log = logging.getLogger(__name__)
progress = progress_logger("training")

CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class FitSettings:
    """Optimizer and stopping settings of one training run."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    weight_decay: float = 0.0
    min_delta: float = 0.0
    #: epochs of a warm-up (e.g. the KL ramp) that neither count towards early stopping nor
    #: lower the learning rate
    warmup_epochs: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any], seed: int, warmup_epochs: int = 0) -> FitSettings:
        """The optimizer keys of a config section (exsitu_model.cvae or .flow)."""
        keys = ("epochs", "batch_size", "learning_rate", "patience", "weight_decay", "min_delta")
        return cls(seed=int(seed), warmup_epochs=int(warmup_epochs),
                   **{k: cfg[k] for k in keys if k in cfg})


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of labels (stable across processes and platforms)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def select_device(request: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is a config error."""
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if request == "cuda" and not torch.cuda.is_available():
        raise SimBridgeConfigError(
            "exsitu_model.device is 'cuda' but torch sees no GPU (torch.cuda.is_available() is "
            "False); set it to 'auto' or 'cpu', or install the CUDA build of torch")
    return torch.device(request)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; full float32 on CPU."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()  # CPU, or a GPU without native bf16: float32


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of an epoch."""
    return np.random.default_rng(derive_seed(seed, "order", epoch)).permutation(n)


@dataclass
class FitResult:
    """What a finished run leaves: the best weights, their epoch, and the history."""

    best_state: dict[str, Tensor]
    best_epoch: int
    best_val_loss: float
    history: pd.DataFrame
    stopped_early: bool


#: step(model, batch, generator, epoch): the losses of one batch; epoch is None in validation.
StepFn = Callable[[nn.Module, Any, torch.Generator, int | None], dict[str, Tensor]]


def save_torch_atomic(payload: dict, path: str | Path) -> None:
    """torch.save under a temporary name, then an atomic rename (simbridge.io.atomic_output)."""
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_checkpoint(checkpoint_dir: Path, config_hash: str) -> dict | None:
    """The last checkpoint if it belongs to this configuration, else None (a fresh start)."""
    path = checkpoint_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint means: start afresh
        log.warning("checkpoint %s cannot be read (%s); training starts from scratch", path, err)
        return None
    if ckpt.get("config_hash") != config_hash:
        log.info("checkpoint %s belongs to other settings; training starts from scratch", path)
        return None
    return ckpt


def fit(
    model: nn.Module,
    step: StepFn,
    train_batches: Callable[[int], Iterable],
    val_batches: Callable[[], Iterable],
    settings: FitSettings,
    checkpoint_dir: str | Path,
    config_hash: str,
    desc: str = "training",
    on_epoch_end: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``model`` with Adam, checkpointing after every epoch and stopping early.

    ``step(model, batch, generator, epoch)`` returns a dict of scalar losses with key "loss"
    (and a "n" entry, the batch size, for averaging); ``epoch`` is None for validation.
    ``train_batches(epoch)`` yields the batches of an epoch in its seeded order;
    ``val_batches()`` the validation batches.
    A checkpoint of the same ``config_hash`` in ``checkpoint_dir`` is resumed.
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate,
                                 weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=max(1, settings.patience // 2))
    history: list[dict] = []
    best_state = _cpu_state(model)
    best_epoch, best_val, bad_epochs, start, stopped = -1, math.inf, 0, 0, False

    ckpt = load_checkpoint(checkpoint_dir, config_hash)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, best_state = ckpt["history"], ckpt["best_state"]
        best_epoch, best_val, bad_epochs = ckpt["best_epoch"], ckpt["best_val"], ckpt["bad_epochs"]
        stopped = ckpt["stopped"]
        start = ckpt["epoch"] + 1
        progress.info("%s: resumed from %s after epoch %d/%d", desc,
                      checkpoint_dir / CHECKPOINT_NAME, ckpt["epoch"] + 1, settings.epochs)

    for epoch in range(start, settings.epochs):
        if stopped:
            break
        t0 = time.perf_counter()
        model.train()
        torch.manual_seed(derive_seed(settings.seed, "train", epoch))
        generator = torch.Generator().manual_seed(derive_seed(settings.seed, "augment", epoch))
        train_sums = _Sums()
        for batch in tqdm(train_batches(epoch), desc=f"{desc} epoch {epoch}", leave=False,
                          mininterval=5.0):
            optimizer.zero_grad(set_to_none=True)
            losses = step(model, batch, generator, epoch)
            if not torch.isfinite(losses["loss"]):
                raise SimBridgeConfigError(
                    f"{desc}: the training loss became {float(losses['loss'].detach())} in "
                    f"epoch {epoch}; "
                    "lower exsitu_model.cvae.learning_rate (or flow.learning_rate) and rerun")
            losses["loss"].backward()
            optimizer.step()
            train_sums.add(losses)
        train_seconds = time.perf_counter() - t0
        val = evaluate_losses(model, step, val_batches(), settings.seed)
        if not math.isfinite(val["loss"]):
            raise SimBridgeConfigError(
                f"{desc}: the validation loss became {val['loss']} in epoch {epoch}; lower "
                "exsitu_model.cvae.learning_rate (or flow.learning_rate) and rerun")
        warming_up = epoch < settings.warmup_epochs
        if not warming_up:
            scheduler.step(val["loss"])
        improved = val["loss"] < best_val - settings.min_delta
        if improved:
            best_val, best_epoch, bad_epochs = val["loss"], epoch, 0
            best_state = _cpu_state(model)
        elif not warming_up:
            bad_epochs += 1
        stopped = bad_epochs >= settings.patience
        train = train_sums.means()
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
               **{f"val_{k}": v for k, v in val.items()},
               "learning_rate": optimizer.param_groups[0]["lr"], "best": improved,
               "epoch_seconds": time.perf_counter() - t0,
               "train_samples_per_s": train_sums.n / max(train_seconds, 1e-9)}
        history.append(row)
        # one line per epoch in the job's log and, inside job_logging, on the terminal
        progress.info("%s epoch %d/%d: train loss %.5g, validation loss %.5g%s, %.0f samples/s, "
                      "%.1f s", desc, epoch + 1, settings.epochs, train["loss"], val["loss"],
                      " (best)" if improved else "", row["train_samples_per_s"],
                      row["epoch_seconds"])
        save_torch_atomic({"epoch": epoch, "model": model.state_dict(),
                           "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "history": history,
                           "best_state": best_state, "best_epoch": best_epoch,
                           "best_val": best_val, "bad_epochs": bad_epochs, "stopped": stopped,
                           "config_hash": config_hash}, checkpoint_dir / CHECKPOINT_NAME)
        if stopped:
            progress.info("%s: early stop after epoch %d/%d (no better validation loss in %d "
                          "epochs)", desc, epoch + 1, settings.epochs, settings.patience)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if best_epoch < 0:
        raise RuntimeError(f"{desc}: no epoch was trained (epochs = {settings.epochs})")
    return FitResult(best_state, best_epoch, best_val, pd.DataFrame(history), stopped)


class _Sums:
    """Sample-weighted running sums of loss terms."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, losses: dict[str, Tensor]) -> None:
        n = int(losses["n"])
        self.n += n
        for k, v in losses.items():
            if k != "n":
                self.sums[k] = self.sums.get(k, 0.0) + float(v.detach()) * n

    def means(self) -> dict[str, float]:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}


@torch.no_grad()
def evaluate_losses(model: nn.Module, step: StepFn, batches: Iterable, seed: int
                    ) -> dict[str, float]:
    """Sample-weighted mean losses over ``batches`` (eval mode, fixed noise seed)."""
    model.eval()
    torch.manual_seed(derive_seed(seed, "validation"))
    generator = torch.Generator().manual_seed(0)
    sums = _Sums()
    for batch in batches:
        sums.add(step(model, batch, generator, None))
    if sums.n == 0:
        raise ValueError("the validation set is empty")
    return sums.means()


def batches_of(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Index arrays of consecutive batches over ``order`` (default: 0..n-1)."""
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]

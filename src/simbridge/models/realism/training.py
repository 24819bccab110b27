"""Training of the realism branch's PixelCNNs on the project's training loop.

One model per image set (the observed set, its archetypes; the no-rotation control trains a
second pair without rotation and flip augmentation). The loss is the negative log-likelihood in
nats per pixel; the best-validation weights are written with the network settings.

Shared initialisation (``pixelcnn.shared_init``, default true): a ``pooled`` model is first
trained from scratch on the observed and the archetype training images together (same epochs,
learning rate, early stopping), and both models of the pair are then fine-tuned from its weights
on their own set for ``finetune_epochs`` at ``finetune_learning_rate`` (a small fraction of the
pretraining rate) without early stopping, so that both take the same number of steps; the best-
validation weights are kept. Both models then describe the sky (almost every pixel of a cutout,
and the same in both sets) with nearly the same conditionals, so the sky cancels in the LLR and
the empty-sky control sits near zero. Two models trained independently from scratch do not share
this: their sky conditionals differ by ~0.01 nats per pixel from the training noise alone, which
over a 32x32 input is a ~10 nats offset for every image (the builder's demo: empty sky 12.3
nats, as large as the observed set's own 12.0). Fine-tuning only one model from the other does
not help (the extra epochs improve its sky further); fine-tuning at the pretraining rate lets
the pair drift apart again (the demo: offsets of ~50 nats at 1e-3); an early stop of one model
on its 15-image validation split (at 3e-4 the observed model stopped at epoch 13, its best at 3,
the archetype model ran all 30) leaves the archetype model better on everything (empty sky and
every set shifted by the same few nats). At 1e-4 for 50 epochs the demo's empty sky scores -0.7
+- 0.7 nats against a galaxy spread of ~4 nats.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from simbridge.errors import SimBridgeInputError
from simbridge.io import atomic_output
from simbridge.models.realism.pixelcnn import PixelCNN, PixelCNNSettings
from simbridge.models.training import (
    FitSettings,
    batches_of,
    epoch_order,
    fit,
    save_torch_atomic,
    select_device,
)

log = logging.getLogger(__name__)


def dihedral(x: Tensor, k: int, flip: bool) -> Tensor:
    """x rotated by k x 90 degrees in the image plane, then mirrored if ``flip``."""
    y = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


def augment_batch(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image under a random one of the 8 rotations and flips (seeded generator)."""
    code = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for c in range(8):
        sel = code == c
        if sel.any():
            out[sel] = dihedral(x[sel], c % 4, c >= 4)
    return out


def nll_step(augment: bool):
    """The loss step: negative log-likelihood per pixel (nats), augmented in training."""

    def step(model: nn.Module, batch: Tensor, generator: torch.Generator, epoch: int | None
             ) -> dict[str, Tensor]:
        x = batch
        if augment and epoch is not None:
            x = augment_batch(x.cpu(), generator).to(batch.device)
        loss = -model.log_prob_pixels(x).mean()
        return {"loss": loss, "n": torch.tensor(x.shape[0])}

    return step


def train_pixelcnn(train_images: np.ndarray, val_images: np.ndarray,
                   net: PixelCNNSettings, training: dict[str, Any], augment: bool, seed: int,
                   checkpoint_dir: str | Path, out_model: str | Path, out_history: str | Path,
                   config_hash: str, name: str, device: str = "auto",
                   init_state: dict[str, Tensor] | None = None) -> dict[str, Any]:
    """Train one PixelCNN on (N, m, m) images in [-1, 1]; write the best model and history.

    ``device``: auto (CUDA when torch sees a GPU, else CPU), cpu or cuda. ``init_state``: start
    from these weights (fine-tuning) instead of the seeded initialisation."""
    if len(train_images) == 0 or len(val_images) == 0:
        raise SimBridgeInputError(f"PixelCNN {name!r}: empty training or validation set",
                                  out_model, "give the observed set more galaxies")
    torch.manual_seed(seed)
    dev = select_device(device)
    model = PixelCNN(net)
    if init_state is not None:
        model.load_state_dict(init_state)
    model = model.to(dev)
    xt = torch.as_tensor(train_images, dtype=torch.float32)[:, None].to(dev)
    xv = torch.as_tensor(val_images, dtype=torch.float32)[:, None].to(dev)
    settings = FitSettings.from_config(training, seed)

    def train_batches(epoch: int):
        order = epoch_order(len(xt), seed, epoch)
        for idx in batches_of(len(xt), settings.batch_size, order):
            yield xt[idx]

    def val_batches():
        for idx in batches_of(len(xv), settings.batch_size):
            yield xv[idx]

    result = fit(model, nll_step(augment), train_batches, val_batches, settings, checkpoint_dir,
                 config_hash, desc=f"pixelcnn {name}")
    save_torch_atomic({"state_dict": result.best_state, "settings": net.as_dict(),
                       "best_epoch": result.best_epoch, "best_val_nll": result.best_val_loss,
                       "augment": augment, "name": name,
                       "fine_tuned": init_state is not None}, out_model)
    with atomic_output(out_history) as tmp:
        result.history.to_csv(tmp, index=False)
    return {"best_epoch": result.best_epoch, "best_val_nll_per_pixel": result.best_val_loss,
            "epochs_run": len(result.history), "stopped_early": result.stopped_early}


def load_pixelcnn(path: str | Path) -> PixelCNN:
    """A trained PixelCNN (eval mode, CPU)."""
    path = Path(path)
    if not path.is_file():
        raise SimBridgeInputError("trained PixelCNN is missing", path,
                                  "run snakemake, which trains it (rule train_realism_model)")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = PixelCNN(PixelCNNSettings(**payload["settings"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def pixelcnn_settings(cfg: dict[str, Any]) -> PixelCNNSettings:
    """The network part of the realism.pixelcnn config section."""
    keys = PixelCNNSettings.__dataclass_fields__
    return PixelCNNSettings(**{k: cfg[k] for k in keys if k in cfg})


def train_realism_model(model_name: str, images_h5: str | Path, observed_manifest: str | Path,
                        cfg: dict[str, Any], seed: int, checkpoint_dir: str | Path,
                        out_model: str | Path, out_history: str | Path,
                        init_model: str | Path | None = None,
                        archetype_images_h5: str | Path | None = None) -> dict[str, Any]:
    """Train the PixelCNN ``model_name`` (pooled, observed, archetype and their _norot twins)
    on the train split of its set, validated on the validation split.

    ``pooled``: ``images_h5`` (observed) and ``archetype_images_h5`` together, from scratch.
    ``init_model``: fine-tune from that model's weights (finetune_epochs, finetune_learning_rate)
    instead of training from the seeded initialisation."""
    from simbridge.config import config_hash
    from simbridge.dataset.realism import read_image_manifest, read_model_input
    from simbridge.models.training import derive_seed

    images = read_model_input(images_h5)
    manifest = read_image_manifest(observed_manifest)
    manifest = manifest[manifest["row"] >= 0].sort_values("row")
    if len(manifest) != len(images):
        raise SimBridgeInputError(
            f"{images_h5} holds {len(images)} images but the observed manifest lists "
            f"{len(manifest)}", observed_manifest, "rerun realism_mocks and realism_archetypes")
    split = manifest["split"].to_numpy()
    augment = bool(cfg.get("augment", True)) and not model_name.endswith("_norot")
    net = pixelcnn_settings(cfg)
    training = {k: cfg[k] for k in ("epochs", "batch_size", "learning_rate", "patience")}
    train, val = images[split == "train"], images[split == "validation"]
    if model_name.split("_")[0] == "pooled":
        if archetype_images_h5 is None:
            raise SimBridgeInputError(f"PixelCNN {model_name!r} needs the archetype set too",
                                      images_h5, "give archetype_images_h5")
        arch = read_model_input(archetype_images_h5)
        if len(arch) != len(images):
            raise SimBridgeInputError(
                f"{archetype_images_h5} holds {len(arch)} images, the observed set "
                f"{len(images)}", archetype_images_h5, "rerun realism_archetypes")
        images = np.concatenate([images, arch])
        train = np.concatenate([train, arch[split == "train"]])
        val = np.concatenate([val, arch[split == "validation"]])
    init_state, init_digest = None, None
    if init_model is not None:
        init_model = Path(init_model)
        if not init_model.is_file():
            raise SimBridgeInputError("the shared initialisation (pooled PixelCNN) is missing",
                                      init_model, "run snakemake, which trains it first")
        init_state = torch.load(init_model, map_location="cpu", weights_only=False)[
            "state_dict"]
        init_digest = hashlib.sha256(init_model.read_bytes()).hexdigest()
        training["epochs"] = int(cfg.get("finetune_epochs", 50))
        training["learning_rate"] = float(cfg.get("finetune_learning_rate", 1.0e-4))
        # no early stop: both models of a pair take the same steps (see the module docstring)
        training["patience"] = training["epochs"]
    # both models of a pair share the seed: the same initial weights and batch order
    run_seed = derive_seed(seed, "realism-pixelcnn", augment) % (2**31)
    # a checkpoint resumes only for the same settings, images and initial weights
    content = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    digest = config_hash({"net": net.as_dict(), "training": training, "augment": augment,
                          "seed": run_seed, "images": content, "model": model_name,
                          "init": init_digest})
    summary = train_pixelcnn(train, val, net, training, augment, run_seed, checkpoint_dir,
                             out_model, out_history, digest, model_name,
                             str(cfg.get("device", "auto")), init_state=init_state)
    log.info("%s: %s", model_name, summary)
    return summary

"""Training jobs of the ex-situ posterior model: the cVAE, then the flow on its latents.

``train_cvae`` and ``train_flow`` are what the workflow's training rules call. Each writes its
best checkpoint (the rule's output), the per-epoch history as CSV and the training curves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

import simbridge
from simbridge.config import config_hash
from simbridge.errors import SimBridgeInputError
from simbridge.io import atomic_output
from simbridge.models.cvae import CVAEArchitecture, ExsituCVAE, elbo_loss
from simbridge.models.data import (
    BatchLoader,
    ConditionNormalizer,
    ExsituMapDataset,
    augment,
    batch_loader,
)
from simbridge.models.flows import LatentFlow
from simbridge.models.likelihood import (
    PARAM_NAMES,
    scale_concentration,
    zoib_log_prob,
    zoib_mean,
    zoib_sample,
)
from simbridge.models.naming import model_name
from simbridge.models.training import (
    FitResult,
    FitSettings,
    autocast,
    batches_of,
    derive_seed,
    epoch_order,
    fit,
    save_torch_atomic,
    select_device,
)

log = logging.getLogger(__name__)

#: Inference modes, in the order of every per-mode array.
MODES = ("reconstruction", "prior", "flow")


def sample_loader(ds: ExsituMapDataset, indices: np.ndarray | None, batch_size: int,
                  workers: int, device: torch.device) -> BatchLoader:
    """(cond, target, mask) batches of ``ds`` in the block-local form of the given order
    (from memory when the split fits, else contiguous reads: simbridge.models.data)."""
    return batch_loader(ds, indices, batch_size, workers, pin_memory=device.type == "cuda")


def load_payload(path: str | Path, kind: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SimBridgeInputError(f"{kind} checkpoint not found", path,
                                  "train it first: snakemake --cores 2 <this file>")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise SimBridgeInputError(f"{kind} checkpoint cannot be read ({err})", path,
                                  "delete it and rerun its training rule") from None
    if payload.get("kind") != kind:
        raise SimBridgeInputError(f"not a {kind} checkpoint (kind: {payload.get('kind')})", path,
                                  "point to the file the training rule wrote")
    return payload


def cvae_from_payload(payload: dict[str, Any], device: torch.device | str = "cpu"
                      ) -> ExsituCVAE:
    """The cVAE of a loaded checkpoint (``load_payload(path, "exsitu_cvae")``) in eval mode."""
    model = ExsituCVAE(CVAEArchitecture(**payload["architecture"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def flow_from_payload(payload: dict[str, Any], device: torch.device | str = "cpu") -> LatentFlow:
    """The latent flow of a loaded checkpoint (``load_payload(path, "exsitu_flow")``), eval mode."""
    flow = LatentFlow(**payload["architecture"])
    flow.load_state_dict(payload["state_dict"])
    return flow.to(device).eval()


@dataclass
class TrainedModel:
    """A trained cVAE and flow of one model of the sweep, as evaluation and inference use them."""

    payloads: dict[str, dict[str, Any]]
    cvae: ExsituCVAE
    flow: LatentFlow

    @property
    def concentration_scale(self) -> float:
        """The predictive's recalibration, fitted on the validation split with the flow."""
        return float(self.payloads["flow"].get("concentration_scale", 1.0))


def load_trained_model(cvae_path: str | Path, flow_path: str | Path,
                       device: torch.device | str = "cpu") -> TrainedModel:
    """Both checkpoints of a model (each loaded once), in eval mode on ``device``."""
    payloads = {"cvae": load_payload(cvae_path, "exsitu_cvae"),
                "flow": load_payload(flow_path, "exsitu_flow")}
    return TrainedModel(payloads, cvae_from_payload(payloads["cvae"], device),
                        flow_from_payload(payloads["flow"], device))


def load_cvae(path: str | Path, device: torch.device | str = "cpu") -> ExsituCVAE:
    """The trained cVAE (best checkpoint) in eval mode."""
    return cvae_from_payload(load_payload(path, "exsitu_cvae"), device)


def load_flow(path: str | Path, device: torch.device | str = "cpu") -> LatentFlow:
    """The trained latent flow (best checkpoint) in eval mode."""
    return flow_from_payload(load_payload(path, "exsitu_flow"), device)


def input_identity(*paths: str | Path) -> list[list]:
    """(name, size, modification time) of input files: a checkpoint resumes only on the very
    inputs it was trained on (a rebuilt dataset starts training afresh)."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([Path(p).name, st.st_size, st.st_mtime_ns])
    return out


def require_npix(ds: ExsituMapDataset, npix: int, source: str, fix: str) -> None:
    """A clear error when a split's maps are not of the size ``source`` has (npix pixels)."""
    if ds.npix != npix:
        raise SimBridgeInputError(
            f"{ds.path.name} holds {ds.npix}-pixel maps, {source} has {npix}-pixel maps",
            ds.path, fix)


REBUILD_FIX = "rebuild the dataset: snakemake --cores 2 dataset"
RETRAIN_FIX = "retrain: snakemake --forcerun train_exsitu_cvae"


def _finish(result: FitResult, payload: dict[str, Any], out_model: str | Path,
            out_history: str | Path, out_figure: str | Path | None, **plot: Any) -> Path:
    """Write a training job's outputs: history CSV, curves figure, best checkpoint."""
    with atomic_output(out_history) as tmp:
        result.history.to_csv(tmp, index=False, float_format="%.6g")
    if out_figure is not None:
        from simbridge.report.model_figures import plot_training_curves

        plot_training_curves(out_history, out_figure, **plot)
    best = result.history.loc[result.history["epoch"] == result.best_epoch].iloc[0]
    save_torch_atomic({**payload, "state_dict": result.best_state,
                       "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                       "stopped_early": result.stopped_early,
                       "best_row": {k: float(v) for k, v in best.items()
                                    if k.startswith(("train_", "val_"))},
                       "simbridge_version": simbridge.__version__}, out_model)
    return Path(out_model)


def train_cvae(
    train_h5: str | Path,
    val_h5: str | Path,
    settings: dict[str, Any],
    out_model: str | Path,
    out_history: str | Path,
    out_figure: str | Path | None,
    checkpoint_dir: str | Path,
    device: str = "auto",
    loader_workers: int = 0,
    on_epoch_end: Callable[[int], None] | None = None,
) -> Path:
    """Train the cVAE of one (latent_dim, beta) and write its best checkpoint.

    ``settings``: seed, latent_dim, beta, channels, summary_dim, augment and cvae (epochs,
    batch_size, learning_rate, patience, ...). Returns the output path.
    """
    dev = select_device(device)
    train_ds, val_ds = ExsituMapDataset(train_h5), ExsituMapDataset(val_h5)
    require_npix(val_ds, train_ds.npix, "the training split", REBUILD_FIX)
    fit_settings = FitSettings.from_config(settings["cvae"], settings["seed"],
                                           settings["cvae"].get("kl_warmup_epochs", 0))
    arch = CVAEArchitecture(npix=train_ds.npix, latent_dim=int(settings["latent_dim"]),
                            channels=tuple(settings["channels"]),
                            summary_dim=int(settings["summary_dim"]))
    torch.manual_seed(derive_seed(settings["seed"], "init", "cvae"))
    model = ExsituCVAE(arch)
    normalizer = ConditionNormalizer.fit(train_ds)
    model.normalizer.load_state_dict(normalizer.state_dict())
    model.to(dev)
    beta = float(settings["beta"])
    use_augment = bool(settings.get("augment", True))
    log.info("cVAE %s on %s: %d training and %d validation samples of %d px, %d parameters",
             model_name(arch.latent_dim, beta), dev, len(train_ds), len(val_ds), arch.npix,
             sum(p.numel() for p in model.parameters()))

    warmup = fit_settings.warmup_epochs
    free_bits = float(settings["cvae"].get("free_bits", 0.0))

    def step(m: ExsituCVAE, batch, generator: torch.Generator, epoch: int | None
             ) -> dict[str, Tensor]:
        train = epoch is not None
        cond, target, mask = batch
        if train and use_augment:
            cond, target, mask = augment(cond, target, mask, generator)
        cond, target, mask = (t.to(dev, non_blocking=True) for t in (cond, target, mask))
        with autocast(dev):
            x_hat, mu, logvar = m(target, m.condition(cond, mask))
        # KL warm-up: the weight ramps from 0 to beta, so the decoder learns to use z before
        # the KL term can close the latent channel (posterior collapse); validation: full beta
        weight = beta * epoch / warmup if train and epoch < warmup else beta
        losses = elbo_loss(x_hat, target, mask, mu, logvar, weight, free_bits if train else 0.0)
        return {**losses, "n": torch.tensor(len(target))}

    def train_batches(epoch: int) -> DataLoader:
        order = epoch_order(len(train_ds), fit_settings.seed, epoch)
        return sample_loader(train_ds, order, fit_settings.batch_size, loader_workers, dev)

    def val_batches() -> DataLoader:
        return sample_loader(val_ds, None, fit_settings.batch_size, loader_workers, dev)

    result = fit(model, step, train_batches, val_batches, fit_settings, checkpoint_dir,
                 config_hash({"settings": settings, "npix": arch.npix,
                              "likelihood": PARAM_NAMES,  # a checkpoint of another head
                              "inputs": input_identity(train_h5, val_h5)}),
                 desc=f"cVAE {model_name(arch.latent_dim, beta)}", on_epoch_end=on_epoch_end)
    return _finish(result, {"kind": "exsitu_cvae", "architecture": arch.to_dict(),
                            "settings": settings, "train_file": str(train_h5)},
                   out_model, out_history, out_figure,
                   title=f"cVAE {Path(out_model).parent.name}", terms=("recon", "kl", "mse"))


@torch.no_grad()
def encode_split(model: ExsituCVAE, ds: ExsituMapDataset, device: torch.device,
                 batch_size: int = 64, workers: int = 0) -> dict[str, Tensor]:
    """Posterior mean and log-variance of every sample's latent, and its condition summary."""
    out: dict[str, list[Tensor]] = {"mu": [], "logvar": [], "summary": []}
    model.eval()
    for cond, target, mask in sample_loader(ds, None, batch_size, workers, device):
        cond, target, mask = (t.to(device) for t in (cond, target, mask))
        with autocast(device):
            features, summary = model.condition_encoder(model.condition(cond, mask))
            mu, logvar = model.encoder(target, features, summary)
        for k, v in (("mu", mu), ("logvar", logvar), ("summary", summary)):
            out[k].append(v.float())
    return {k: torch.cat(v) for k, v in out.items()}


def train_flow(
    cvae_path: str | Path,
    train_h5: str | Path,
    val_h5: str | Path,
    settings: dict[str, Any],
    out_flow: str | Path,
    out_history: str | Path,
    out_figure: str | Path | None,
    checkpoint_dir: str | Path,
    device: str = "auto",
    loader_workers: int = 0,
    on_epoch_end: Callable[[int], None] | None = None,
) -> Path:
    """Train the conditional MAF p(z | summary) on latents of the trained cVAE's encoder.

    Each epoch draws ``flow.latent_draws`` latents per training sample from q(z | x, c), so the
    flow learns the aggregate posterior given the condition summary.
    """
    dev = select_device(device)
    cfg = settings["flow"]
    cvae = load_cvae(cvae_path, dev)
    train_ds, val_ds = ExsituMapDataset(train_h5), ExsituMapDataset(val_h5)
    for ds in (train_ds, val_ds):
        require_npix(ds, cvae.arch.npix, f"the cVAE {cvae_path}", RETRAIN_FIX)
    train_lat = encode_split(cvae, train_ds, dev, workers=loader_workers)
    val_lat = encode_split(cvae, val_ds, dev, workers=loader_workers)
    fit_settings = FitSettings.from_config(cfg, settings["seed"])
    torch.manual_seed(derive_seed(settings["seed"], "init", "flow"))
    flow = LatentFlow(cvae.arch.latent_dim, cvae.arch.summary_dim, int(cfg["transforms"]),
                      tuple(cfg["hidden_features"])).to(dev)
    flow.set_standardization(train_lat["mu"], train_lat["summary"], train_lat["logvar"].exp())
    draws = int(cfg["latent_draws"])

    def step(f: LatentFlow, idx: Tensor, generator: torch.Generator, epoch: int | None
             ) -> dict[str, Tensor]:
        lat = val_lat if epoch is None else train_lat
        idx = torch.as_tensor(idx, device=dev).repeat(draws)
        mu, logvar, s = lat["mu"][idx], lat["logvar"][idx], lat["summary"][idx]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        nll = -f.log_prob(z, s).mean()
        return {"loss": nll, "n": torch.tensor(len(idx))}

    def train_batches(epoch: int) -> Iterator[np.ndarray]:
        order = epoch_order(len(train_ds), fit_settings.seed, epoch)
        return batches_of(len(order), fit_settings.batch_size, order)

    def val_batches() -> Iterator[np.ndarray]:
        return batches_of(len(val_ds), fit_settings.batch_size)

    result = fit(flow, step, train_batches, val_batches, fit_settings, checkpoint_dir,
                 config_hash({"settings": settings,
                              "inputs": input_identity(cvae_path, train_h5, val_h5)}),
                 desc=f"flow {Path(out_flow).parent.name}", on_epoch_end=on_epoch_end)
    flow.load_state_dict(result.best_state)
    torch.manual_seed(derive_seed(settings["seed"], "recalibration"))
    scale, curve = fit_concentration_scale(cvae, flow.eval(), val_ds, dev,
                                           int(cfg.get("recalibration_draws", 50)))
    log.info("posterior predictive recalibrated on the validation split: Beta concentrations "
             "x %.3g (validation log-likelihood per galaxy pixel %.4f -> %.4f)", scale,
             curve[1.0], curve[scale])
    return _finish(result, {"kind": "exsitu_flow", "architecture": flow.config(),
                            "settings": settings, "concentration_scale": scale,
                            "recalibration_curve": curve},
                   out_flow, out_history, out_figure, title=f"flow {Path(out_flow).parent.name}",
                   terms=(), loss_label="negative log-likelihood of z [nats]")


#: Candidate factors on the Beta concentrations of the recalibration (1 is always one).
CONCENTRATION_SCALES = tuple(float(x) for x in np.round(np.geomspace(0.25, 8.0, 31), 4)) + (1.0,)


@torch.no_grad()
def fit_concentration_scale(cvae: ExsituCVAE, flow: LatentFlow, ds: ExsituMapDataset,
                            device: torch.device, n_draws: int = 50, batch_size: int = 8,
                            scales: tuple[float, ...] = CONCENTRATION_SCALES
                            ) -> tuple[float, dict[float, float]]:
    """The factor on the Beta concentrations that maximises the flow-mode posterior predictive
    log-likelihood of the galaxy pixels of ``ds`` (the validation split).

    The cVAE's likelihood is trained for one latent drawn from q(z | x, c), with a small KL
    weight; the posterior predictive mixes it over the flow's p(z | c), which adds the spread
    of the decoded maps over z. One scalar fitted on held-out maps by a proper scoring rule
    (the predictive log-likelihood) undoes the resulting under- or over-dispersion of the
    continuous part; the point masses are left as trained. Returns (scale, {scale: mean
    log-likelihood per galaxy pixel}).
    """
    totals = dict.fromkeys(scales, 0.0)
    n_pixels = 0
    for cond, target, mask in sample_loader(ds, None, batch_size, 0, device):
        cond, target, mask = (t.to(device) for t in (cond, target, mask))
        raw = posterior_likelihoods(cvae, flow, cond, mask, None, "flow", n_draws)
        m = mask[:, 0].bool()
        n_pixels += int(m.sum())
        for scale, total in predictive_log_likelihood(raw, target[:, 0], m, scales).items():
            totals[scale] += total
    curve = {s_: v / max(n_pixels, 1) for s_, v in totals.items()}
    best = max(curve, key=curve.get)
    return best, curve


def predictive_log_likelihood(raw: Tensor, y: Tensor, mask: Tensor,
                              scales: tuple[float, ...]) -> dict[float, float]:
    """Summed log-likelihood of y (B, n, n) at the pixels of ``mask`` under the equal-weight
    mixture of the K likelihoods ``raw`` (K, B, N_PARAMS, n, n), for each concentration scale."""
    out = {}
    for scale in scales:
        lp = zoib_log_prob(scale_concentration(raw, scale), y)
        mix = torch.logsumexp(lp, dim=0) - math.log(raw.shape[0])
        out[scale] = float(mix[mask].sum())
    return out


@torch.no_grad()
def posterior_likelihoods(cvae: ExsituCVAE, flow: LatentFlow | None, cond: Tensor, mask: Tensor,
                          target: Tensor | None, mode: str, n_draws: int, chunk: int = 25,
                          concentration_scale: float = 1.0) -> Tensor:
    """Raw per-pixel likelihood parameters for n_draws latents per sample.

    Returns (n_draws, B, N_PARAMS, n, n) float32 (see :mod:`simbridge.models.likelihood`).
    Modes: 'reconstruction' (z from the encoder given the true map: a lower bound on the
    error), 'prior' (z ~ N(0, I)) and 'flow' (z from the flow given the condition summary).
    Draws use torch's global generator (seed it for reproducible draws).
    ``concentration_scale``: the recalibration factor of the trained flow's checkpoint
    (``concentration_scale`` in flow.pt, see :func:`fit_concentration_scale`).
    """
    device = cond.device
    features, summary = cvae.condition_encoder(cvae.condition(cond, mask))
    b, d = len(cond), cvae.arch.latent_dim
    if mode == "reconstruction":
        if target is None:
            raise ValueError("reconstruction needs the true map")
        mu, logvar = cvae.encoder(target, features, summary)
        z = mu + torch.randn(n_draws, b, d, device=device) * torch.exp(0.5 * logvar)
    elif mode == "prior":
        z = torch.randn(n_draws, b, d, device=device)
    elif mode == "flow":
        if flow is None:
            raise ValueError("flow sampling needs the trained flow")
        z = flow.sample(summary, n_draws)
    else:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    raws = []
    for start in range(0, n_draws, chunk):
        zc = z[start:start + chunk]
        k = len(zc)
        feats = [f.repeat(k, 1, 1, 1) for f in features]
        out = cvae.decoder(zc.reshape(k * b, d).to(summary.dtype), feats, summary.repeat(k, 1))
        raws.append(out.float().reshape(k, b, *out.shape[1:]))
    return scale_concentration(torch.cat(raws), concentration_scale)


@torch.no_grad()
def posterior_draws(cvae: ExsituCVAE, flow: LatentFlow | None, cond: Tensor, mask: Tensor,
                    target: Tensor | None, mode: str, n_draws: int, chunk: int = 25,
                    predictive: bool = False, concentration_scale: float = 1.0) -> Tensor:
    """n_draws posterior ex-situ maps per sample: (n_draws, B, n, n).

    ``predictive=False``: the likelihood's mean map for each latent draw (the posterior of the
    mean map, what the ex-situ work shows). ``predictive=True``: one draw of every pixel from
    its zero-one-inflated Beta for each latent draw, a plausible ex-situ map; the spread of
    such draws is the posterior predictive's. Modes as in :func:`posterior_likelihoods`.
    """
    raw = posterior_likelihoods(cvae, flow, cond, mask, target, mode, n_draws, chunk,
                                concentration_scale)
    return zoib_sample(raw) if predictive else zoib_mean(raw)

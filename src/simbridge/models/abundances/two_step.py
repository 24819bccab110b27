"""The training jobs of the two-step inference and the optuna study (one function per rule).

Step 1 (N_sub): ``nsub_npe`` (a flow on N_sub as a continuous parameter, estimate = rounded
posterior median; MAF by default: sbi 0.27's one-dimensional NSF, whose spline parameters
come from the context alone, learned nothing on the demo, test correlation 0.09 of its
posterior median with N_sub against 0.91 for MAF), ``nsub_classifier`` (skip-connection
CNN; our training loop, checkpointed and resumable), ``nsub_mnpe`` (sbi's mixed NPE: N_sub
discrete, jointly with the continuous log10 total stellar mass). Step 2 (blocks):
``block_npe_<k>``, member k of an ensemble of NSF NPEs on one row per building block,
conditioned on its rank and N_sub.

Tuning: each worker job runs ``trials_per_worker`` trials of one optuna study stored in a
journal file (optuna's JournalStorage, file backend with its open-lock), so several SLURM jobs
share it; trials tune learning rate, batch size, flow size (hidden features) and embedding
size (summary dimension) of the step-2 NPE by validation log-probability. The best trial's
settings train both NPEs of step 1 and the step-2 ensemble. Workers run in parallel, so which
trial a worker gets depends on timing; each worker's sampler is seeded from (seed, worker).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simbridge.io import write_json_atomic
from simbridge.models.abundances.data import (
    Split,
    block_rows,
    read_split,
    transform_theta,
    transform_x,
    x_scale,
)
from simbridge.models.abundances.nets import SkipConnectionClassifier
from simbridge.models.abundances.npe import (
    NpeSettings,
    box_prior,
    mean_log_prob,
    plane_embedding,
    save_posterior,
    settings_dict,
    train_npe,
)
from simbridge.models.training import (
    FitSettings,
    batches_of,
    derive_seed,
    epoch_order,
    fit,
    save_torch_atomic,
    select_device,
)

log = logging.getLogger(__name__)

STEP1_ESTIMATORS = ("nsub_npe", "nsub_classifier", "nsub_mnpe")


def block_npe_name(member: int) -> str:
    """File stem of ensemble member ``member`` of the step-2 NPE."""
    return f"block_npe_{member}"


def _splits(files: dict[str, str], config: dict[str, Any]) -> tuple[Split, Split, float]:
    n_range = tuple(config["abundances"]["superposition"]["n_sub_range"])
    train, val = read_split(files["train"], n_range), read_split(files["validation"], n_range)
    return train, val, x_scale(train.x)


def _device(config: dict[str, Any]) -> str:
    """abundances.inference.device: auto -> CUDA when torch sees a GPU, else CPU."""
    return str(select_device(config["abundances"]["inference"]["device"]))


def _flat(split: Split, scale: float) -> torch.Tensor:
    return transform_x(split.x, scale).reshape(len(split.x), -1)


def block_prior_bounds(train: Split) -> tuple[np.ndarray, np.ndarray]:
    """Uniform prior of step 2: min and max of the training blocks' parameters (CASBI)."""
    theta = transform_theta(train.theta.reshape(-1, 3))
    theta = theta[np.isfinite(theta).all(axis=1)]
    span = theta.max(axis=0) - theta.min(axis=0)
    return theta.min(axis=0) - 0.01 * span, theta.max(axis=0) + 0.01 * span


def train_nsub_npe(files: dict[str, str], config: dict[str, Any], best: dict[str, Any] | None,
                   out: str | Path) -> dict[str, Any]:
    """Step 1a: NPE on N_sub as a continuous parameter (uniform prior, +-0.5 around the range)."""
    inference = config["abundances"]["inference"]
    settings = NpeSettings.from_config(inference, best)
    train, val, scale = _splits(files, config)
    lo, hi = train.n_sub_range
    device = _device(config)
    prior = box_prior(np.array([lo - 0.5]), np.array([hi + 0.5]), device)
    n_pix = train.x.shape[-1]
    posterior, summary = train_npe(
        torch.as_tensor(train.n_sub[:, None], dtype=torch.float32), _flat(train, scale),
        torch.as_tensor(val.n_sub[:, None], dtype=torch.float32), _flat(val, scale), prior,
        settings, plane_embedding(n_pix, settings), config["seed"], "nsub_npe", device=device,
        model=inference["nsub_npe_model"])
    meta = {"kind": "nsub_npe", "flow": inference["nsub_npe_model"], "x_scale": scale,
            "n_sub_range": [lo, hi],
            "settings": settings_dict(settings), "summary": summary}
    save_posterior(out, posterior, meta)
    return meta


def train_nsub_mnpe(files: dict[str, str], config: dict[str, Any], best: dict[str, Any] | None,
                    out: str | Path) -> dict[str, Any]:
    """Step 1c: sbi's MNPE, theta = (log10 total stellar mass, N_sub - N_min as a category)."""
    inference = config["abundances"]["inference"]
    settings = NpeSettings.from_config(inference, best)
    train, val, scale = _splits(files, config)
    lo, hi = train.n_sub_range

    def theta_of(split: Split) -> torch.Tensor:
        total = np.log10(np.nansum(split.theta[..., 0], axis=1))
        return torch.as_tensor(np.stack([total, split.n_sub - lo], axis=1), dtype=torch.float32)

    n_pix = train.x.shape[-1]
    posterior, summary = train_npe(
        theta_of(train), _flat(train, scale), theta_of(val), _flat(val, scale), None,
        settings, plane_embedding(n_pix, settings), config["seed"], "nsub_mnpe", mixed=True,
        device=_device(config))
    meta = {"kind": "nsub_mnpe", "x_scale": scale, "n_sub_range": [lo, hi],
            "parameters": ["log10_total_stellar_mass_msun", "n_sub - n_sub_min (category)"],
            "settings": settings_dict(settings), "summary": summary}
    save_posterior(out, posterior, meta)
    return meta


def train_block_npe(files: dict[str, str], config: dict[str, Any], best: dict[str, Any] | None,
                    member: int, out: str | Path) -> dict[str, Any]:
    """Step 2: one ensemble member; one row per block: (plane, rank, N_sub) -> parameters."""
    inference = config["abundances"]["inference"]
    settings = NpeSettings.from_config(inference, best)
    train, val, scale = _splits(files, config)
    seed = derive_seed(config["seed"], "block_npe", member)
    cap = inference["step2_max_rows"]
    theta_t, x_t, _, _ = block_rows(train, scale, cap, seed, "train")
    theta_v, x_v, _, _ = block_rows(val, scale, None if cap is None else max(cap // 4, 1), seed,
                                 "validation")
    low, high = block_prior_bounds(train)
    n_pix = train.x.shape[-1]
    device = _device(config)
    posterior, summary = train_npe(theta_t, x_t, theta_v, x_v, box_prior(low, high, device),
                                   settings, plane_embedding(n_pix, settings, n_extra=2), seed,
                                   block_npe_name(member), device=device)
    summary["validation_log_prob"] = mean_log_prob(posterior, theta_v, x_v)
    meta = {"kind": "block_npe", "member": member, "x_scale": scale,
            "n_sub_range": list(train.n_sub_range), "prior_low": low.tolist(),
            "prior_high": high.tolist(), "settings": settings_dict(settings),
            "summary": summary}
    save_posterior(out, posterior, meta)
    return meta


def train_nsub_classifier(files: dict[str, str], config: dict[str, Any], out: str | Path,
                          checkpoints: str | Path) -> dict[str, Any]:
    """Step 1b: skip-connection CNN classifier over N_sub (our resumable training loop)."""
    cfg = config["abundances"]["inference"]["classifier"]
    train, val, scale = _splits(files, config)
    lo, hi = train.n_sub_range
    x_t, x_v = transform_x(train.x, scale), transform_x(val.x, scale)
    y_t = torch.as_tensor(train.n_sub - lo)
    y_v = torch.as_tensor(val.n_sub - lo)
    pool = config["abundances"]["inference"]["embedding_input_pool"]
    device = torch.device(_device(config))
    model = SkipConnectionClassifier(list(cfg["channels"]), hi - lo + 1, pool).to(device)
    settings = FitSettings(epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                           learning_rate=cfg["learning_rate"], patience=cfg["patience"],
                           seed=derive_seed(config["seed"], "nsub_classifier"))
    loss_fn = nn.CrossEntropyLoss()

    def step(net: nn.Module, batch: tuple, generator: torch.Generator, epoch: int | None
             ) -> dict[str, torch.Tensor]:
        xb, yb = batch[0].to(device), batch[1].to(device)
        logits = net(xb)
        acc = (logits.argmax(1) == yb).float().mean()
        return {"loss": loss_fn(logits, yb), "accuracy": acc, "n": torch.tensor(len(yb))}

    def train_batches(epoch: int):
        order = epoch_order(len(y_t), settings.seed, epoch)
        for idx in batches_of(len(y_t), settings.batch_size, order):
            yield x_t[idx], y_t[idx]

    def val_batches():
        for idx in batches_of(len(y_v), settings.batch_size):
            yield x_v[idx], y_v[idx]

    digest = hashlib.sha256(json.dumps({"cfg": cfg, "pool": pool, "n": [len(y_t), len(y_v)],
                                        "scale": scale,
                                        "seed": config["seed"]}, sort_keys=True).encode())
    result = fit(model, step, train_batches, val_batches, settings, checkpoints,
                 digest.hexdigest(), desc="nsub_classifier")
    meta = {"kind": "nsub_classifier", "x_scale": scale, "n_sub_range": [lo, hi],
            "channels": list(cfg["channels"]), "input_pool": pool,
            "best_epoch": result.best_epoch,
            "history": result.history.to_dict(orient="list")}
    save_torch_atomic({"state": result.best_state, "meta": meta}, out)
    return meta


def load_classifier(path: str | Path) -> tuple[SkipConnectionClassifier, dict[str, Any]]:
    """The trained classifier (eval mode) and its metadata."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    meta = payload["meta"]
    lo, hi = meta["n_sub_range"]
    model = SkipConnectionClassifier(meta["channels"], hi - lo + 1, meta["input_pool"])
    model.load_state_dict(payload["state"])
    return model.eval(), meta


# ----------------------------------------------------------------------------------------------
# optuna: several workers, one study in a journal file
# ----------------------------------------------------------------------------------------------


def _study(journal: str | Path, config: dict[str, Any], seed: int | None = None) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    journal = Path(journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal),
                                                lock_obj=JournalFileOpenLock(str(journal))))
    key = json.dumps({"seed": config["seed"], "abundances": config["abundances"]},
                     sort_keys=True, default=str)
    name = "block_npe-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    sampler = optuna.samplers.TPESampler(seed=None if seed is None else seed % 2**32,
                                         n_startup_trials=2)
    return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                               sampler=sampler, load_if_exists=True)


def suggest_settings(trial: Any, inference: dict[str, Any]) -> dict[str, Any]:
    """The tuned settings of one trial (ranges from abundances.inference.tuning)."""
    tuning = inference["tuning"]
    lr_lo, lr_hi = tuning["learning_rate_range"]
    hf_lo, hf_hi = tuning["hidden_features_range"]
    return {"learning_rate": trial.suggest_float("learning_rate", lr_lo, lr_hi, log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(tuning["batch_sizes"])),
            "hidden_features": trial.suggest_int("hidden_features", hf_lo, hf_hi),
            "summary_dim": trial.suggest_categorical("summary_dim",
                                                     list(tuning["summary_dims"]))}


def tune_worker(files: dict[str, str], config: dict[str, Any], journal: str | Path,
                worker: int, out: str | Path) -> dict[str, Any]:
    """Run this worker's trials of the shared study; write the trial numbers it ran."""
    inference = config["abundances"]["inference"]
    tuning = inference["tuning"]
    train, val, scale = _splits(files, config)
    cap = tuning["max_train_samples"]
    seed = derive_seed(config["seed"], "tuning", worker)
    theta_t, x_t, _, _ = block_rows(train, scale, cap, seed, "train")
    theta_v, x_v, _, _ = block_rows(val, scale, max(cap // 4, 1), seed, "validation")
    low, high = block_prior_bounds(train)
    n_pix = train.x.shape[-1]
    study = _study(journal, config, seed=seed)
    device = _device(config)
    ran = []

    def objective(trial: Any) -> float:
        chosen = suggest_settings(trial, inference)
        settings = NpeSettings.from_config(inference, {**chosen,
                                                       "max_epochs": tuning["max_epochs"]})
        posterior, _ = train_npe(theta_t, x_t, theta_v, x_v, box_prior(low, high, device),
                                 settings, plane_embedding(n_pix, settings, n_extra=2),
                                 derive_seed(seed, trial.number), f"trial {trial.number}",
                                 device=device)
        ran.append(trial.number)
        return mean_log_prob(posterior, theta_v, x_v)

    study.optimize(objective, n_trials=tuning["trials_per_worker"])
    record = {"worker": worker, "trials": ran, "study": study.study_name}
    write_json_atomic(out, record)
    return record


def select_best(journal: str | Path, config: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Best trial's settings, every trial's value and parameter importances (fANOVA)."""
    import optuna

    study = _study(journal, config)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError(f"the optuna study {study.study_name} in {journal} has no complete "
                           "trial; rerun the tuning workers")
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as err:  # too few or identical trials
        log.info("parameter importances unavailable: %s", err)
        importances = {}
    record = {"study": study.study_name, "best_trial": study.best_trial.number,
              "best_value": study.best_value, "best_settings": study.best_params,
              "trials": [{"number": t.number, "value": t.value, "params": t.params}
                         for t in done],
              "importances": {k: float(v) for k, v in importances.items()}}
    write_json_atomic(out, record)
    return record

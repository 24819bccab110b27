"""Two-step inference pieces: NPE calibration on a toy with an exact posterior, our
validation split inside sbi, N_sub scores, and optuna workers sharing one journal file."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from simbridge.models.abundances.evaluation import (
    calibration_metrics,
    central_coverage,
    nsub_scores,
)
from simbridge.models.abundances.npe import (
    NpeSettings,
    _fixed_split_loaders,
    box_prior,
    mean_log_prob,
    train_npe,
)

pytest.importorskip("sbi")

SIGMA = 0.3


def _toy(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """theta ~ U(-3, 3)^2, x = theta + N(0, SIGMA^2): the posterior is a Gaussian N(x, SIGMA^2)
    truncated to the box (for |x| < 2 the truncation is below 1e-3)."""
    theta = rng.uniform(-3, 3, (n, 2))
    x = theta + rng.normal(0, SIGMA, (n, 2))
    return torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32)


def test_npe_is_calibrated_on_a_toy_with_an_exact_posterior():
    rng = np.random.default_rng(0)
    theta_t, x_t = _toy(2400, rng)
    theta_v, x_v = _toy(400, rng)
    settings = NpeSettings(learning_rate=3e-3, batch_size=128, hidden_features=32,
                           num_transforms=2, summary_dim=2, channels=(1,), max_epochs=200,
                           stop_after_epochs=10)
    prior = box_prior(np.full(2, -3.0), np.full(2, 3.0))
    posterior, summary = train_npe(theta_t, x_t, theta_v, x_v, prior, settings, nn.Identity(),
                                   seed=1, name="toy")
    assert summary["n_train"] == 2400 and summary["n_validation"] == 400
    # against the exact posterior at points away from the box edges
    x_o = torch.tensor([[0.0, 0.0], [1.2, -0.7], [-1.5, 1.5]])
    draws = posterior.sample_batched((2000,), x=x_o, show_progress_bars=False).numpy()
    np.testing.assert_allclose(draws.mean(axis=0), x_o.numpy(), atol=SIGMA / 2)
    np.testing.assert_allclose(draws.std(axis=0), SIGMA, rtol=0.2)
    # its mean validation log-probability is close to the exact one (Gaussian, 2 dims)
    exact = -np.log(2 * np.pi * SIGMA**2) - 1.0
    inner = (x_v.abs() < 2).all(dim=1)
    assert mean_log_prob(posterior, theta_v[inner], x_v[inner]) == pytest.approx(exact, abs=0.2)
    # calibration on draws from the joint: TARP and central intervals within 0.1 of the levels
    theta_e, x_e = _toy(150, rng)
    levels = [0.2, 0.5, 0.8, 0.9]
    m = calibration_metrics(posterior, theta_e, x_e, 100, levels, ["a", "b"])
    assert m["tarp"]["max_abs_deviation"] <= 0.1
    for name in ("a", "b"):
        np.testing.assert_allclose(m["coverage"]["per_parameter"][name], levels, atol=0.1)
    assert min(m["sbc"]["ks_pvalues"]) > 1e-4


def test_central_coverage_of_exact_posterior_draws_matches_the_levels():
    rng = np.random.default_rng(3)
    theta = rng.normal(0, 1, (4000, 1))
    x = theta + rng.normal(0, 0.5, theta.shape)
    # exact Gaussian posterior of a N(0, 1) prior and N(theta, 0.25) likelihood
    mean, sd = x / 1.25, np.sqrt(0.25 / 1.25)
    draws = mean[None] + sd * rng.normal(size=(500, *x.shape))
    levels = [0.1, 0.5, 0.9]
    np.testing.assert_allclose(central_coverage(draws, theta, levels)[:, 0], levels, atol=0.03)


def test_sbi_trains_on_our_training_rows_and_validates_on_ours():
    class Fake:
        n_train = 7

        def get_simulations(self, starting_round=0):
            theta = torch.arange(10.0)[:, None]
            return theta, theta.clone(), torch.ones(10, 1)

    fake = Fake()
    train, val = _fixed_split_loaders(fake, 0, 4)
    val_rows = sorted(int(t) for batch in val for t in batch[0][:, 0])
    train_rows = {int(t) for batch in train for t in batch[0][:, 0]}
    assert val_rows == [7, 8, 9]
    assert train_rows <= set(range(7))


def test_nsub_scores_against_a_loop():
    rng = np.random.default_rng(0)
    true = rng.integers(2, 8, 300)
    est = np.clip(true + rng.integers(-2, 3, 300), 2, 7)
    s = nsub_scores(true, est, list(range(2, 8)))
    cm = np.zeros((6, 6), int)
    for t, e in zip(true, est, strict=True):
        cm[t - 2, e - 2] += 1
    np.testing.assert_array_equal(s["confusion_matrix"], cm)
    assert s["accuracy"] == pytest.approx(np.mean(true == est))
    assert sum(s["error_histogram"]["counts"]) == 300


def _tiny_split(path: Path, n: int, rng: np.random.Generator) -> None:
    n_sub = rng.integers(2, 4, n)
    theta = np.full((n, 3, 3), np.nan)
    for i, k in enumerate(n_sub):
        theta[i, :k] = np.column_stack([10 ** rng.uniform(6, 9, k), 10 ** rng.uniform(9, 11, k),
                                        rng.uniform(2, 13, k)])
    with h5py.File(path, "w") as h5:
        h5["x"] = rng.poisson(1.0, (n, 8, 8)).astype(np.float32)
        h5["n_sub"] = n_sub
        h5["theta"] = theta


def _tiny_config() -> dict:
    return {"seed": 3, "abundances": {
        "superposition": {"n_sub_range": [2, 3]},
        "inference": {
            "device": "cpu", "learning_rate": 1e-3, "batch_size": 32, "hidden_features": 8,
            "num_transforms": 1,
            "summary_dim": 4, "embedding_channels": [2], "max_epochs": 1,
            "stop_after_epochs": 1, "embedding_input_pool": 1, "step2_max_rows": None,
            "tuning": {"n_workers": 2, "trials_per_worker": 2, "max_epochs": 1,
                       "max_train_samples": 100, "learning_rate_range": [1e-4, 1e-2],
                       "batch_sizes": [16, 32], "hidden_features_range": [4, 8],
                       "summary_dims": [2, 4]}}}}


def _worker(args: tuple) -> None:
    from simbridge.models.abundances.two_step import tune_worker

    torch.set_num_threads(1)
    files, journal, worker, out = args
    tune_worker(files, _tiny_config(), journal, worker, out)


def test_optuna_workers_in_separate_processes_share_one_journal(tmp_path):
    from simbridge.models.abundances.two_step import select_best

    rng = np.random.default_rng(0)
    files = {s: str(tmp_path / f"{s}.h5") for s in ("train", "validation")}
    _tiny_split(Path(files["train"]), 60, rng)
    _tiny_split(Path(files["validation"]), 20, rng)
    journal = tmp_path / "tuning" / "journal.log"
    jobs = [(files, str(journal), w, str(tmp_path / f"worker_{w}.json")) for w in range(2)]
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_worker, jobs)
    record = select_best(journal, _tiny_config(), tmp_path / "best.json")
    numbers = [t["number"] for t in record["trials"]]
    assert sorted(numbers) == [0, 1, 2, 3]  # four trials, unique numbers, one study
    assert set(record["best_settings"]) == {"learning_rate", "batch_size", "hidden_features",
                                            "summary_dim"}
    assert record["best_value"] == max(t["value"] for t in record["trials"])

"""PixelCNN: autoregressive masking (by gradients), exact normalisation, LLR properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import logistic

from simbridge.models.realism.evaluation import bootstrap_mean, score_images
from simbridge.models.realism.pixelcnn import (
    PixelCNN,
    PixelCNNSettings,
    discretised_logistic_mixture_log_prob,
    log_likelihood_ratio,
)
from simbridge.models.realism.training import augment_batch, dihedral, train_pixelcnn

torch.set_num_threads(1)
SMALL = PixelCNNSettings(channels=8, n_blocks=2, kernel_size=3, first_kernel_size=5,
                         n_mixtures=3, n_levels=256)


def test_no_output_depends_on_its_own_or_later_pixels():
    torch.manual_seed(0)
    model = PixelCNN(SMALL).double()
    h = w = 6
    for i in range(h * w):
        x = torch.rand(1, 1, h, w, dtype=torch.float64, requires_grad=True)
        out = model(x)
        out[0, :, i // w, i % w].sum().backward()
        grad = x.grad[0, 0].flatten().abs()
        assert torch.all(grad[i:] == 0), f"pixel {i} sees itself or a later pixel"
        if i > 0:
            assert grad[:i].sum() > 0, f"pixel {i} sees no earlier pixel"


def test_probabilities_sum_to_one_over_an_enumerated_image_space():
    torch.manual_seed(1)
    settings = PixelCNNSettings(channels=8, n_blocks=2, first_kernel_size=3, n_mixtures=2,
                                n_levels=4)
    model = PixelCNN(settings).double()
    with torch.no_grad():  # wider output spread than at initialisation
        model.head[-1].weight.mul_(5.0)
    levels = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64)
    images = torch.tensor(list(itertools.product(range(4), repeat=4)))
    x = levels[images].reshape(-1, 1, 2, 2)
    with torch.no_grad():
        logp = model.log_prob(x)
    assert torch.logsumexp(logp, 0).item() == pytest.approx(0.0, abs=1e-9)
    assert logp.std() > 0.1  # a non-trivial distribution


def test_discretised_logistic_matches_scipy_bin_probabilities():
    n_levels = 16
    centres = np.linspace(-1, 1, n_levels)
    mu, s = 0.13, 0.2
    params = torch.tensor([0.0, mu, np.log(s)], dtype=torch.float64).reshape(1, 3, 1, 1)
    half = 1.0 / (n_levels - 1)
    got = []
    for c in centres:
        x = torch.tensor([[[c]]], dtype=torch.float64)
        got.append(float(discretised_logistic_mixture_log_prob(x, params, n_levels)))
    want = logistic.cdf(centres + half, mu, s) - logistic.cdf(centres - half, mu, s)
    want[0] = logistic.cdf(centres[0] + half, mu, s)
    want[-1] = 1.0 - logistic.cdf(centres[-1] - half, mu, s)
    assert np.allclose(np.exp(got), want, rtol=1e-9, atol=1e-12)


def test_llr_of_identical_models_is_zero_and_swapping_flips_its_sign():
    torch.manual_seed(2)
    a, b = PixelCNN(SMALL), PixelCNN(SMALL)
    b.load_state_dict(a.state_dict())
    c = PixelCNN(SMALL)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        llr, llr_map = log_likelihood_ratio(a, b, x)
        assert torch.all(llr == 0) and torch.all(llr_map == 0)
        ac, ac_map = log_likelihood_ratio(a, c, x)
        ca, _ = log_likelihood_ratio(c, a, x)
    assert torch.allclose(ac, -ca)
    assert torch.allclose(ac_map.sum(dim=(1, 2)), ac, atol=1e-4)
    scores = score_images(a, b, x[:, 0].numpy(), batch_size=2)
    assert np.all(scores["llr"] == 0) and scores["llr_map"].shape == (5, 8, 8)


def test_augmentation_uses_the_eight_symmetries_of_the_square():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    variants = {tuple(dihedral(x, k, f).flatten().tolist()) for k in range(4) for f in (0, 1)}
    assert len(variants) == 8
    out = augment_batch(x.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0))
    assert {tuple(o.flatten().tolist()) for o in out} <= variants


def test_training_learns_a_brighter_centre_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:8, :8] - 3.5
    blob = np.exp(-(xx**2 + yy**2) / 4.0)
    images = np.clip(blob[None] * 0.8 + rng.normal(0, 0.05, (96, 8, 8)), -1, 1).astype("f4")
    net = PixelCNNSettings(channels=8, n_blocks=1, first_kernel_size=3, n_mixtures=2)
    cfg = {"epochs": 3, "batch_size": 16, "learning_rate": 5e-3, "patience": 5}
    kw = dict(checkpoint_dir=tmp_path / "ck", out_model=tmp_path / "m.pt",
              out_history=tmp_path / "h.csv", config_hash="x", name="toy")
    r = train_pixelcnn(images[:64], images[64:], net, cfg, True, 3, **kw)
    hist = np.loadtxt(tmp_path / "h.csv", delimiter=",", skiprows=1, usecols=2)
    assert hist[-1] < hist[0]  # validation NLL falls
    again = train_pixelcnn(images[:64], images[64:], net, cfg, True, 3, **kw)
    assert again["best_val_nll_per_pixel"] == pytest.approx(r["best_val_nll_per_pixel"])


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    """init_state: training resumes from those weights (the shared initialisation), so a
    vanishing learning rate returns them, while the seeded initialisation differs."""
    rng = np.random.default_rng(1)
    images = np.clip(rng.normal(0, 0.1, (48, 6, 6)), -1, 1).astype("f4")
    net = PixelCNNSettings(channels=4, n_blocks=1, first_kernel_size=3, n_mixtures=2)
    torch.manual_seed(123)
    init = {k: v.clone() for k, v in PixelCNN(net).state_dict().items()}
    cfg = {"epochs": 1, "batch_size": 16, "learning_rate": 1e-12, "patience": 5}
    for name, state in (("tuned", init), ("scratch", None)):
        train_pixelcnn(images[:32], images[32:], net, cfg, False, 3, tmp_path / name,
                       tmp_path / f"{name}.pt", tmp_path / f"{name}.csv", "x", name,
                       device="cpu", init_state=state)
    tuned = torch.load(tmp_path / "tuned.pt", weights_only=False)
    scratch = torch.load(tmp_path / "scratch.pt", weights_only=False)
    assert tuned["fine_tuned"] and not scratch["fine_tuned"]
    for k, v in init.items():
        assert torch.allclose(tuned["state_dict"][k], v, atol=1e-6), k
    assert not all(torch.allclose(scratch["state_dict"][k], v, atol=1e-6)
                   for k, v in init.items() if v.dtype.is_floating_point)


def test_bootstrap_standard_error_matches_the_analytic_one():
    v = np.random.default_rng(0).normal(3.0, 2.0, 400)
    s = bootstrap_mean(v, 2000, 0, "x")
    assert s["bootstrap_se"] == pytest.approx(v.std() / np.sqrt(len(v)), rel=0.1)
    assert s["interval_low"] < 3.0 < s["interval_high"] or abs(s["mean"] - 3) > 0.1

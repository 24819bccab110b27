"""The ex-situ posterior model: shapes and skip wiring, loss, flow density, coverage, data
loading, and training that checkpoints, resumes after a kill and stops early."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zuko")

from scipy import stats  # noqa: E402

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError  # noqa: E402
from simbridge.models.cvae import (  # noqa: E402
    CVAEArchitecture,
    ExsituCVAE,
    elbo_loss,
    gaussian_kl,
    masked_mse,
    masked_nll,
)
from simbridge.models.data import (  # noqa: E402
    ConditionNormalizer,
    ExsituMapDataset,
    augment,
    check_split_file,
)
from simbridge.models.evaluation import (  # noqa: E402
    binned_residuals,
    central_intervals,
    coverage_hits,
)
from simbridge.models.exsitu import (  # noqa: E402
    MODES,
    load_cvae,
    posterior_draws,
    train_cvae,
)
from simbridge.models.flows import LatentFlow  # noqa: E402
from simbridge.models.likelihood import (  # noqa: E402
    N_BETA,
    N_PARAMS,
    mixture_pit,
    pit_coverage,
    zoib_log_prob,
    zoib_mean,
    zoib_parameters,
    zoib_sample,
    zoib_variance,
)
from simbridge.models.training import FitSettings, fit, select_device  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.toy_splits import toy_settings, write_toy_split  # noqa: E402

ARCH = CVAEArchitecture(npix=32, latent_dim=5, channels=(4, 8, 16), summary_dim=7)


def _model() -> ExsituCVAE:
    torch.manual_seed(0)
    return ExsituCVAE(ARCH).eval()


# --- architecture -------------------------------------------------------------------------

def test_shapes_of_the_three_networks_and_mean_map_in_unit_interval():
    model = _model()
    cond = torch.randn(3, 6, 32, 32)
    features, summary = model.condition_encoder(cond)
    assert [tuple(f.shape) for f in features] == [(3, 4, 32, 32), (3, 8, 16, 16), (3, 16, 8, 8)]
    assert summary.shape == (3, 7)
    mu, logvar = model.encoder(torch.rand(3, 1, 32, 32), features, summary)
    assert mu.shape == logvar.shape == (3, 5)
    for scale in (1.0, 1e3):  # the likelihood's mean is bounded even for latents far out
        with torch.no_grad():
            out = model.decoder(scale * torch.randn(3, 5), features, summary)
        assert out.shape == (3, N_PARAMS, 32, 32)
        mean = zoib_mean(out)
        assert torch.isfinite(mean).all()
        assert float(mean.min()) >= 0.0 and float(mean.max()) <= 1.0
    raw, mu, logvar = model(torch.rand(3, 1, 32, 32), cond)
    assert raw.shape == (3, N_PARAMS, 32, 32)


def test_map_size_must_halve_at_every_level():
    with pytest.raises(ValueError, match="divisible by 8"):
        CVAEArchitecture(npix=36, channels=(4, 8, 16))


def test_condition_features_of_every_level_reach_encoder_and_decoder():
    """The skips: gradients flow from the encoder's and the decoder's outputs into the condition
    feature map of every level, passed as separate tensors (so only the skip can carry them)."""
    model = _model()
    features, summary = model.condition_encoder(torch.randn(2, 6, 32, 32))
    features = [f.detach().requires_grad_(True) for f in features]
    summary = summary.detach()
    model.decoder(torch.randn(2, 5), features, summary).square().sum().backward()
    dec = [float(f.grad.abs().sum()) for f in features]
    assert all(g > 0 for g in dec), dec
    for f in features:
        f.grad = None
    mu, _ = model.encoder(torch.rand(2, 1, 32, 32), features, summary)
    mu.square().sum().backward()
    enc = [float(f.grad.abs().sum()) for f in features]
    assert all(g > 0 for g in enc), enc
    # the full-resolution skip reaches the decoder's output pixel by pixel: changing the
    # level-0 features in one corner changes the output there
    features0 = [f.detach().clone() for f in features]
    with torch.no_grad():
        base = model.decoder(torch.zeros(2, 5), features0, summary)
        features0[0][:, :, :4, :4] += 5.0
        moved = model.decoder(torch.zeros(2, 5), features0, summary)
    assert float((moved - base)[:, :, :4, :4].abs().max()) > 1e-4
    with pytest.raises(ValueError, match="3 condition feature maps"):
        model.decoder(torch.randn(2, 5), features[:2], summary)


# --- loss ---------------------------------------------------------------------------------

def _zoib_logpdf_scipy(raw: np.ndarray, y: float) -> float:
    """Reference log-likelihood of one pixel: numpy softmax, scipy's Beta components."""
    c = N_BETA
    logits = raw[: 2 + c].astype(np.float64)
    log_probs = logits - np.logaddexp.reduce(logits)
    mu = 1 / (1 + np.exp(-raw[2 + c: 2 + 2 * c].astype(np.float64)))
    phi = np.log1p(np.exp(raw[2 + 2 * c:].astype(np.float64))) + 1e-2
    if y == 0:
        return float(log_probs[0])
    if y == 1:
        return float(log_probs[1])
    comps = [log_probs[2 + k] + stats.beta.logpdf(y, mu[k] * phi[k], (1 - mu[k]) * phi[k])
             for k in range(c)]
    return float(np.logaddexp.reduce(comps))


def _random_raw(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape[:-2], N_PARAMS, *shape[-2:], generator=g) * 1.5


def test_zoib_log_likelihood_against_scipy_with_point_masses():
    g = torch.Generator().manual_seed(3)
    raw = _random_raw(g, 2, 4, 4)
    y = torch.rand(2, 4, 4, generator=g)
    y[0, 0, :2] = 0.0
    y[1, 1, 1:] = 1.0
    lp = zoib_log_prob(raw, y).numpy()
    for idx in np.ndindex(2, 4, 4):
        b, i, j = idx
        ref = _zoib_logpdf_scipy(raw[b, :, i, j].numpy(), float(y[idx]))
        assert lp[idx] == pytest.approx(ref, rel=1e-4, abs=1e-4), idx


def test_zoib_is_normalised_and_its_moments_match_its_draws():
    g = torch.Generator().manual_seed(4)
    raw = _random_raw(g, 1, 2, 3).double().float()
    p = {k: v.numpy()[0] for k, v in zoib_parameters(raw).items()}
    for i, j in np.ndindex(2, 3):
        interior = sum(p["pi_c"][k, i, j] * stats.beta.cdf(1.0, p["alpha"][k, i, j],
                                                            p["beta"][k, i, j])
                       for k in range(N_BETA))
        total = p["pi_0"][i, j] + p["pi_1"][i, j] + interior
        assert total == pytest.approx(1.0, abs=1e-5)
    torch.manual_seed(0)
    draws = zoib_sample(raw.expand(40000, -1, -1, -1)).numpy()
    assert draws.min() >= 0 and draws.max() <= 1
    np.testing.assert_allclose(draws.mean(0), zoib_mean(raw).numpy()[0], atol=0.01)
    np.testing.assert_allclose(draws.var(0), zoib_variance(raw).numpy()[0], atol=0.01)
    np.testing.assert_allclose((draws == 1).mean(0), p["pi_1"], atol=0.01)
    np.testing.assert_allclose((draws == 0).mean(0), p["pi_0"], atol=0.01)


def test_randomized_pit_of_the_predictive_is_uniform_and_detects_overconfidence():
    """Values drawn from a mixture of ZOIBs (K posterior draws) have a uniform randomized PIT,
    point masses included, and central intervals cover them at their level; values drawn from
    a wider distribution than the predictive are undercovered."""
    g = torch.Generator().manual_seed(5)
    k, m = 4, 30000
    raw = _random_raw(g, k, 1, m)  # (K, 5, 1, m): K draws of m pixels
    raw[:, 2 + 2 * N_BETA:] += 2.0  # concentrations of a few or more (else draws underflow)
    torch.manual_seed(1)
    per_draw = zoib_sample(raw)[:, 0]  # (K, m)
    pick = torch.randint(0, k, (m,), generator=g)
    y = per_draw[pick, torch.arange(m)].numpy().astype(np.float64)
    pars = zoib_parameters(raw)
    params = {key: pars[key][..., 0, :].numpy().astype(np.float64)
              for key in ("pi_0", "pi_1", "pi_c", "alpha", "beta")}  # (K, [C,] m)
    assert 0.05 < (y == 1).mean() < 0.6 and 0.05 < (y == 0).mean() < 0.6  # masses matter here
    rng = np.random.default_rng(0)
    pit, pit_interior = mixture_pit(params, y, rng.random(m))
    assert stats.kstest(pit, "uniform").pvalue > 1e-3
    inner = pit_interior[np.isfinite(pit_interior)]
    assert inner.size == ((y > 0) & (y < 1)).sum()
    assert stats.kstest(inner, "uniform").pvalue > 1e-3
    levels = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(pit_coverage(pit, levels), levels, atol=0.015)
    # the same predictive judged on values from another distribution: miscalibrated
    y_other = rng.random(m)
    pit_other, _ = mixture_pit(params, y_other, rng.random(m))
    assert np.abs(pit_coverage(pit_other, levels) - levels).max() > 0.05


def test_concentration_scale_multiplies_phi_and_its_fit_recovers_a_known_factor():
    """scale_concentration multiplies every Beta concentration and leaves the point masses;
    the predictive log-likelihood fit finds the factor between a model's concentration and the
    one the data were drawn from."""
    from simbridge.models.exsitu import CONCENTRATION_SCALES, predictive_log_likelihood
    from simbridge.models.likelihood import scale_concentration

    g = torch.Generator().manual_seed(6)
    raw = _random_raw(g, 3, 4, 4)
    p, q = zoib_parameters(raw), zoib_parameters(scale_concentration(raw, 2.5))
    torch.testing.assert_close(q["phi"], 2.5 * p["phi"], rtol=1e-4, atol=1e-5)
    for key in ("pi_0", "pi_1", "pi_c", "mu"):
        torch.testing.assert_close(q[key], p[key])
    # data: Beta(mu phi_true) in the interior; the model's concentration is phi_true / 3
    m = 4000
    model = torch.zeros(1, 1, N_PARAMS, 1, m)
    model[:, :, 2] = 3.0  # the first Beta component holds nearly all the probability
    model[:, :, 2 + N_BETA] = 0.4  # mean logit
    phi_true = 30.0
    model[:, :, 2 + 2 * N_BETA] = math.log(math.expm1(phi_true / 3 - 1e-2))
    mu = 1 / (1 + math.exp(-0.4))
    y = torch.distributions.Beta(mu * phi_true, (1 - mu) * phi_true).sample((1, 1, m))
    curve = predictive_log_likelihood(model, y[0], torch.ones(1, 1, m, dtype=torch.bool),
                                      CONCENTRATION_SCALES)
    best = max(curve, key=curve.get)
    assert 2.4 <= best <= 3.7, best
    assert curve[best] > curve[1.0]


def test_elbo_loss_against_independent_references():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 8, 8, generator=g)
    x[:, :, 0, :3] = 1.0
    x[:, :, 1, :2] = 0.0
    raw = _random_raw(g, 4, 8, 8)
    mask = (torch.rand(4, 1, 8, 8, generator=g) > 0.4).float()
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    beta = 0.3
    xn, mn = x.numpy(), mask.numpy().astype(bool)
    nll = np.array([-np.mean([_zoib_logpdf_scipy(raw[i, :, a, b].numpy(), float(xn[i, 0, a, b]))
                              for a, b in zip(*np.nonzero(mn[i, 0]), strict=True)])
                    for i in range(4)])
    mean_map = zoib_mean(raw)[:, None]
    mse = np.array([((mean_map.numpy()[i] - xn[i])[mn[i]] ** 2).mean() for i in range(4)])
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
        torch.distributions.Normal(0.0, 1.0)).sum(1)
    np.testing.assert_allclose(masked_nll(raw, x, mask).numpy(), nll, rtol=1e-4)
    np.testing.assert_allclose(masked_mse(mean_map, x, mask).numpy(), mse, rtol=1e-5)
    np.testing.assert_allclose(gaussian_kl(mu, logvar).numpy(), kl.numpy(), rtol=1e-5)
    losses = elbo_loss(raw, x, mask, mu, logvar, beta)
    np.testing.assert_allclose(float(losses["loss"]), nll.mean() + beta * float(kl.mean()),
                               rtol=1e-4)
    assert float(losses["mse"]) == pytest.approx(mse.mean(), rel=1e-5)
    # pixels outside the galaxy carry no loss
    other = torch.where(mask.bool(), raw, _random_raw(g, 4, 8, 8))
    assert float(elbo_loss(other, x, mask, mu, logvar, beta)["loss"]) == pytest.approx(
        float(losses["loss"]), rel=1e-6)
    assert float(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max()) == 0.0
    # free bits: dimensions whose batch-mean KL is below the floor cost the floor, and the
    # reported KL stays the true one
    small_mu = (0.1 * mu).requires_grad_(True)
    fb = elbo_loss(raw, x, mask, small_mu, torch.zeros(4, 3), beta, free_bits=1.0)
    assert float(fb["loss"].detach()) == pytest.approx(nll.mean() + beta * 3 * 1.0, rel=1e-5)
    assert float(fb["kl"].detach()) == pytest.approx(
        float(gaussian_kl(small_mu, torch.zeros(4, 3)).mean().detach()), rel=1e-6)
    fb["loss"].backward()
    assert float(small_mu.grad.abs().max()) == 0.0


# --- flow ---------------------------------------------------------------------------------

def test_flow_log_prob_is_the_change_of_variables_density():
    """log p(z|s) equals log N(T(u); 0, I) + log|det dT/dz| with the Jacobian by autograd."""
    torch.manual_seed(2)
    flow = LatentFlow(3, 2, transforms=2, hidden_features=(16,)).double()
    flow.set_standardization(torch.randn(50, 3, dtype=torch.float64) * 3 + 1,
                             torch.randn(50, 2, dtype=torch.float64))
    for p in flow.parameters():  # move away from the near-identity initialisation
        p.data += 0.3 * torch.randn_like(p)
    s = torch.randn(2, dtype=torch.float64)
    dist = flow.maf(flow._context(s))

    def to_base(z: torch.Tensor) -> torch.Tensor:
        return dist.transform((z - flow.z_shift) / flow.z_scale)

    for z in torch.randn(5, 3, dtype=torch.float64) * 2:
        jac = torch.autograd.functional.jacobian(to_base, z)
        u = to_base(z)
        exact = stats.multivariate_normal(np.zeros(3)).logpdf(u.detach().numpy()) + math.log(
            abs(float(torch.linalg.det(jac))))
        ours = float(flow.log_prob(z[None], s[None]).detach())
        assert ours == pytest.approx(exact, abs=1e-6)


def test_flow_standardization_uses_the_spread_of_sampled_latents():
    """A latent dimension the encoder does not use (mu = 0, var = 1) gets scale 1, not ~0."""
    flow = LatentFlow(2, 1, transforms=1, hidden_features=(8,))
    mu = torch.stack([torch.linspace(-3, 3, 1001), torch.zeros(1001)], 1)
    var = torch.stack([torch.full((1001,), 0.25), torch.ones(1001)], 1)
    flow.set_standardization(mu, torch.randn(1001, 1), var)
    expected = [math.sqrt(float(mu[:, 0].var()) + 0.25), 1.0]
    np.testing.assert_allclose(flow.z_scale.numpy(), expected, rtol=1e-5)
    z = mu + var.sqrt() * torch.randn(1001, 2)
    assert torch.isfinite(flow.log_prob(z, torch.randn(1001, 1))).all()


def test_trained_flow_recovers_a_linear_gaussian_conditional_density():
    """Fit z | s ~ N(A s + b, C) and compare log p with scipy's exact density."""
    rng = np.random.default_rng(3)
    a_mat, b = np.array([[1.5, -0.5], [0.3, 2.0]]), np.array([2.0, -1.0])
    chol = np.array([[0.8, 0.0], [0.5, 0.4]])
    cov = chol @ chol.T
    s = rng.standard_normal((4000, 2))
    z = s @ a_mat.T + b + rng.standard_normal((4000, 2)) @ chol.T
    zt, st = torch.tensor(z, dtype=torch.float32), torch.tensor(s, dtype=torch.float32)
    torch.manual_seed(4)
    flow = LatentFlow(2, 2, transforms=3, hidden_features=(32, 32))
    flow.set_standardization(zt, st)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(600):
        idx = torch.randint(0, 4000, (256,))
        loss = -flow.log_prob(zt[idx], st[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    s_test = rng.standard_normal((500, 2))
    z_test = s_test @ a_mat.T + b + rng.standard_normal((500, 2)) @ chol.T
    exact = np.array([stats.multivariate_normal(a_mat @ si + b, cov).logpdf(zi)
                      for si, zi in zip(s_test, z_test, strict=True)])
    with torch.no_grad():
        ours = flow.log_prob(torch.tensor(z_test, dtype=torch.float32),
                             torch.tensor(s_test, dtype=torch.float32)).numpy()
    assert abs(ours.mean() - exact.mean()) < 0.05, (ours.mean(), exact.mean())
    assert np.median(np.abs(ours - exact)) < 0.1
    # the density integrates to one at a fixed context
    grid = np.linspace(-8, 8, 241)
    zz = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2) + \
        (a_mat @ np.array([0.5, -0.5]) + b)
    with torch.no_grad():
        dens = flow.log_prob(torch.tensor(zz, dtype=torch.float32),
                             torch.tensor([[0.5, -0.5]] * len(zz), dtype=torch.float32)).exp()
    assert float(dens.sum()) * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=0.01)
    draws = flow.sample(torch.tensor([[0.5, -0.5]], dtype=torch.float32), 4000)[:, 0].detach()
    np.testing.assert_allclose(draws.mean(0).numpy(), a_mat @ [0.5, -0.5] + b, atol=0.08)


# --- coverage -----------------------------------------------------------------------------

@pytest.mark.parametrize("truth_sigma", [1.0, 0.5, 2.0])
def test_coverage_of_central_intervals_against_a_known_gaussian(truth_sigma):
    """Posterior draws N(0, 1), truth N(0, s^2): a level-l interval covers 2 Phi(z_l / s) - 1."""
    rng = np.random.default_rng(5)
    levels = [0.1, 0.5, 0.68, 0.9, 0.99]
    draws = rng.standard_normal((2000, 4000))
    truth = truth_sigma * rng.standard_normal(4000)
    cov = coverage_hits(draws, truth, levels) / truth.size
    z = stats.norm.ppf((1 + np.asarray(levels)) / 2)
    expected = 2 * stats.norm.cdf(z / truth_sigma) - 1
    np.testing.assert_allclose(cov, expected, atol=0.025)
    # order statistics: of the draws 0..98, the k-th smallest sits at k/(N+1) = k/100
    lower, upper = central_intervals(np.arange(99.0)[:, None] * [1.0, 2.0], [0.9, 0.5])
    np.testing.assert_allclose(lower, [[4.0, 8.0], [24.0, 48.0]])
    np.testing.assert_allclose(upper, [[94.0, 188.0], [74.0, 148.0]])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        central_intervals(draws, [1.0])


def test_hundred_draws_give_calibrated_intervals_for_a_calibrated_posterior():
    """With N = 100 draws, Weibull quantiles cover a value from the same distribution with
    probability l; numpy's default (linear) rule would give l (N-1)/(N+1)."""
    rng = np.random.default_rng(8)
    levels = [0.5, 0.9, 0.98]
    draws = rng.standard_normal((100, 40000))
    cov = coverage_hits(draws, rng.standard_normal(40000), levels) / 40000
    np.testing.assert_allclose(cov, levels, atol=0.006)
    # a truth exactly at the boundary of a sigmoid output is covered only with a tolerance
    near_one = 1 - rng.uniform(1e-4, 5e-3, (100, 50))
    assert coverage_hits(near_one, np.ones(50), [0.9]).tolist() == [0]
    assert coverage_hits(near_one, np.ones(50), [0.9], tolerance=0.01).tolist() == [50]


def test_binned_residuals_against_brute_force():
    rng = np.random.default_rng(6)
    truth, res = rng.uniform(0, 1, 5000), rng.normal(0, 0.1, 5000)
    out = binned_residuals(truth, res)
    for b in range(10):
        sel = (truth >= b / 10) & (truth < (b + 1) / 10)
        assert out["count"][b] == sel.sum()
        assert out["mean_abs"][b] == pytest.approx(np.abs(res[sel]).mean())
        assert out["mean_signed"][b] == pytest.approx(res[sel].mean())


# --- data ---------------------------------------------------------------------------------

def test_loader_reads_samples_by_random_access_and_normalizes_galaxy_pixels(tmp_path):
    path = write_toy_split(tmp_path / "train.h5", 12)
    ds = ExsituMapDataset(path)
    cond, target, mask = ds[7]
    with h5py.File(path) as h5:
        np.testing.assert_array_equal(cond.numpy(), h5["conditions"][7])
        np.testing.assert_array_equal(target[0].numpy(), h5["exsitu_fraction_map"][7])
        all_cond, all_mask = h5["conditions"][:], h5["galaxy_mask"][:].astype(bool)
    norm = ConditionNormalizer.fit(ds)
    x = norm(torch.from_numpy(all_cond), torch.from_numpy(all_mask[:, None]).float()).numpy()
    assert x.shape == (12, 6, 16, 16)
    galaxy = x[:, :5].transpose(1, 0, 2, 3)[:, all_mask]
    np.testing.assert_allclose(galaxy.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(galaxy.std(1), 1, atol=1e-3)
    assert np.all(x[:, :5].transpose(1, 0, 2, 3)[:, ~all_mask] == 0)
    np.testing.assert_array_equal(x[:, 5], all_mask)
    # log-transformed channels: the standardized log surface density, by hand
    logsig = np.log10(all_cond[:, 0][all_mask])
    np.testing.assert_allclose(galaxy[0], (logsig - logsig.mean()) / logsig.std(), atol=1e-3)


def test_augmentation_applies_one_symmetry_of_the_square_to_all_maps():
    g = torch.Generator().manual_seed(0)
    cond, target, mask = torch.randn(16, 5, 8, 8), torch.rand(16, 1, 8, 8), torch.rand(16, 1, 8, 8)
    c2, t2, m2 = augment(cond, target, mask, g)
    seen = set()
    for i in range(16):
        matches = [(k, f) for k in range(4) for f in range(2)
                   if torch.equal(_sym(cond[i], k, f), c2[i])]
        assert len(matches) == 1
        k, f = matches[0]
        seen.add((k, f))
        assert torch.equal(_sym(target[i], k, f), t2[i]) and torch.equal(_sym(mask[i], k, f), m2[i])
    assert len(seen) > 3


def _sym(x: torch.Tensor, k: int, flip: int) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "split file is missing"),
        ("nan", "NaN or inf values (first in sample 3)"),
        ("range", "outside [0, 1]"),
        ("empty", "holds no sample"),
        ("truncated", "cannot be"),
        ("no_mask", "lacks the dataset"),
    ],
)
def test_bad_split_files_give_clear_errors(tmp_path, damage, message):
    path = tmp_path / "train.h5"
    if damage != "missing":
        write_toy_split(path, 0 if damage == "empty" else 6)
    if damage in ("nan", "range", "no_mask"):
        with h5py.File(path, "a") as h5:
            if damage == "nan":
                h5["conditions"][3, 2, 4, 4] = np.nan
            elif damage == "range":
                h5["exsitu_fraction_map"][1, 0, 0] = 1.5
            else:
                del h5["galaxy_mask"]
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SimBridgeInputError, match=re.escape(message)) as err:
        check_split_file(path)
    assert str(path) in str(err.value) and "fix:" in str(err.value)


def test_cuda_without_a_gpu_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert select_device("auto").type == "cpu"
    with pytest.raises(SimBridgeConfigError, match="exsitu_model.device"):
        select_device("cuda")


# --- training -----------------------------------------------------------------------------

def test_early_stopping_keeps_the_best_epoch(tmp_path):
    """Training pulls w to 1, validation wants 0.3: the best epoch is the one nearest 0.3 and
    training stops `patience` epochs later."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(0.0)

    def step(m, batch, generator, epoch):
        w = m.weight[0, 0]
        loss = (w - 1.0) ** 2 if epoch is not None else (w - 0.3) ** 2
        return {"loss": loss, "n": torch.tensor(1)}

    settings = FitSettings(epochs=50, batch_size=1, learning_rate=0.05, patience=3, seed=0)
    result = fit(model, step, lambda e: [0], lambda: [0], settings, tmp_path, "h")
    ws = []
    torch.manual_seed(0)
    w = torch.zeros(1, requires_grad=True)  # replay the optimizer to get every epoch's weight
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(len(result.history)):
        opt.zero_grad()
        ((w - 1.0) ** 2).sum().backward()
        opt.step()
        ws.append(float(w.detach()))
    best = int(np.argmin(np.abs(np.array(ws) - 0.3)))
    assert result.best_epoch == best
    assert result.stopped_early and len(result.history) == best + 1 + 3
    assert float(result.best_state["weight"]) == pytest.approx(ws[best], abs=1e-6)
    # epochs of a warm-up do not count towards early stopping
    model.weight.data.fill_(0.5)  # already past 0.3: validation only gets worse
    warm = FitSettings(epochs=50, batch_size=1, learning_rate=0.05, patience=3, seed=0,
                       warmup_epochs=4)
    result = fit(model, step, lambda e: [0], lambda: [0], warm, tmp_path / "warm", "h")
    assert result.best_epoch == 0 and len(result.history) == 4 + 3


TRAIN_SCRIPT = textwrap.dedent("""
    import logging, os, signal, sys
    import torch
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    from simbridge.models.exsitu import train_cvae
    from tests.toy_splits import toy_settings
    out, kill_after, beta = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    def hook(epoch):
        if epoch == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    train_cvae(sys.argv[4], sys.argv[5], toy_settings(beta=beta) | {"beta": beta},
               out + "/cvae.pt", out + "/history.csv", None, out + "/checkpoints",
               device="cpu", on_epoch_end=hook)
""")


def _train(tmp_path: Path, out: str, kill_after: int = -1, beta: float = 7e-5
           ) -> subprocess.CompletedProcess:
    train = tmp_path / "train.h5"
    val = tmp_path / "validation.h5"
    if not train.exists():
        write_toy_split(train, 24, seed=1)
        write_toy_split(val, 8, seed=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(tmp_path / out),
                           str(kill_after), str(beta), str(train), str(val)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)


def test_training_killed_mid_run_resumes_from_its_checkpoint(tmp_path):
    straight = _train(tmp_path, "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = _train(tmp_path, "resumed", kill_after=1)
    assert killed.returncode == -signal.SIGKILL
    ckpt = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and not (tmp_path / "resumed/cvae.pt").exists()
    resumed = _train(tmp_path, "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "after epoch 2/4" in resumed.stderr  # 1-based
    a = torch.load(tmp_path / "straight/cvae.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed/cvae.pt", weights_only=False)
    assert a["best_epoch"] == b["best_epoch"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    ha = (tmp_path / "straight/history.csv").read_text().splitlines()
    hb = (tmp_path / "resumed/history.csv").read_text().splitlines()
    cols = ha[0].split(",").index("learning_rate") + 1  # losses match; timings differ
    assert [r.split(",")[:cols] for r in ha] == [r.split(",")[:cols] for r in hb]
    assert len(ha) == 1 + 4
    # other settings do not resume that checkpoint
    other = _train(tmp_path, "resumed", beta=1e-3)
    assert other.returncode == 0 and "other settings" in other.stderr
    assert "resumed from" not in other.stderr


def test_posterior_draws_in_the_three_modes(tmp_path):
    train = write_toy_split(tmp_path / "t.h5", 16)
    val = write_toy_split(tmp_path / "v.h5", 8, seed=9)
    settings = toy_settings(epochs=2)
    train_cvae(train, val, settings, tmp_path / "cvae.pt", tmp_path / "h.csv", None,
               tmp_path / "ck", device="cpu")
    cvae = load_cvae(tmp_path / "cvae.pt")
    flow = LatentFlow(3, 6, 2, (8,))
    cond, target, mask = (torch.stack(x) for x in zip(*[ExsituMapDataset(val)[i]
                                                        for i in range(3)], strict=True))
    for mode in MODES:
        torch.manual_seed(0)
        draws = posterior_draws(cvae, flow, cond, mask, target, mode, 7, chunk=3)
        assert draws.shape == (7, 3, 16, 16)
        assert float(draws.min()) >= 0 and float(draws.max()) <= 1
        torch.manual_seed(0)
        maps = posterior_draws(cvae, flow, cond, mask, target, mode, 7, predictive=True)
        assert maps.shape == (7, 3, 16, 16)
        assert float(maps.min()) >= 0 and float(maps.max()) <= 1
        assert bool(((maps == 0) | (maps == 1)).any())  # point masses are drawn
        torch.manual_seed(0)
        assert torch.equal(draws, posterior_draws(cvae, flow, cond, mask, target, mode, 7,
                                                  chunk=3))
        torch.manual_seed(0)  # decoding in other chunk sizes changes only float rounding
        torch.testing.assert_close(draws, posterior_draws(cvae, flow, cond, mask, target, mode,
                                                          7), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="true map"):
        posterior_draws(cvae, flow, cond, mask, None, "reconstruction", 2)


def test_a_diverging_loss_stops_training_with_a_clear_error(tmp_path):
    model = torch.nn.Linear(1, 1)

    def step(m, batch, generator, epoch):
        return {"loss": m.weight.sum() * float("nan"), "n": torch.tensor(1)}

    settings = FitSettings(epochs=3, batch_size=1, learning_rate=0.1, patience=2, seed=0)
    with pytest.raises(SimBridgeConfigError, match="learning_rate"):
        fit(model, step, lambda e: [0], lambda: [0], settings, tmp_path, "h")


def test_evaluation_metrics_agree_with_the_posterior_maps_it_writes(tmp_path, caplog):
    """Train a tiny cVAE and flow, evaluate, and recompute the residuals from the files."""
    from simbridge.models.evaluation import evaluate_model
    from simbridge.models.exsitu import train_flow

    train = write_toy_split(tmp_path / "t.h5", 16)
    val = write_toy_split(tmp_path / "v.h5", 8, seed=9)
    test = write_toy_split(tmp_path / "test.h5", 6, seed=10)
    settings = toy_settings(epochs=2)
    train_cvae(train, val, settings, tmp_path / "cvae.pt", tmp_path / "h.csv", None,
               tmp_path / "ck", device="cpu")
    train_flow(tmp_path / "cvae.pt", train, val, settings, tmp_path / "flow.pt",
               tmp_path / "fh.csv", None, tmp_path / "fk", device="cpu")
    with caplog.at_level("WARNING"):
        metrics = evaluate_model(tmp_path / "cvae.pt", tmp_path / "flow.pt", test,
                                 {"seed": 1, "n_draws": 20, "credible_levels": [0.5, 0.95],
                                  "coverage_tolerance": 0.01},
                                 tmp_path / "metrics.json", tmp_path / "post.h5", device="cpu",
                                 batch_size=4)
    assert "needs more than 20 draws" in caplog.text  # 0.95 > 19/21
    with h5py.File(test) as h5, h5py.File(tmp_path / "post.h5") as post:
        truth, mask = h5["exsitu_fraction_map"][:], h5["galaxy_mask"][:].astype(bool)
        means, stds = post["posterior_mean"][:], post["posterior_std"][:]
    assert means.shape == stds.shape == (6, 3, 16, 16)
    assert metrics["n_galaxy_pixels"] == mask.sum() and metrics["n_galaxies"] == 3
    assert metrics["fraction_of_pixels_at_0"] == pytest.approx((truth[mask] == 0).mean())
    for j, mode in enumerate(MODES):
        res = np.abs(means[:, j] - truth)[mask]
        stats_ = metrics["modes"][mode]
        assert stats_["mean_abs_residual"] == pytest.approx(res.mean(), rel=1e-5)
        assert stats_["mean_posterior_std"] == pytest.approx(stds[:, j][mask].mean(), rel=1e-5)
        assert sum(stats_["residual_histogram"]["counts"]) == mask.sum()
        assert set(stats_["coverage_interior"]) == {"0.5", "0.95"}
        pred = stats_["predictive"]
        assert sum(pred["pit_histogram"]["counts"]) == mask.sum()
        interior = (truth > 0) & (truth < 1) & mask
        assert sum(pred["pit_histogram_interior"]["counts"]) == interior.sum()
        groups = pred["coverage_by_true_fraction"]
        assert groups["1"]["n_pixels"] == ((truth == 1) & mask).sum()
        assert sum(gr["n_pixels"] for gr in groups.values()) == mask.sum()
        assert stats_["mean_predictive_std"] >= stats_["mean_posterior_std"]
    assert metrics["cvae_best_val_recon"] > 0 and "flow_best_val_loss" in metrics

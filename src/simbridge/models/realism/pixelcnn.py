"""A small PixelCNN++-style autoregressive model of one-channel images.

p(x) = prod_i p(x_i | x_<i) over pixels in raster order (row by row, left to right). Masked
convolutions see only earlier pixels: the first ("A") mask hides the centre pixel, later ("B")
masks admit it (it then holds only information of earlier pixels). Residual blocks are gated
(tanh(a) * sigmoid(b), van den Oord et al. 2016); the output is a mixture of discretised
logistics per pixel (Salimans et al. 2017, PixelCNN++), so log p(x) is an exact log-probability
of the image quantised to ``n_levels`` values in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class PixelCNNSettings:
    """Network size and likelihood of a PixelCNN."""

    channels: int = 32
    n_blocks: int = 4
    kernel_size: int = 3
    first_kernel_size: int = 7
    n_mixtures: int = 5
    n_levels: int = 256

    def as_dict(self) -> dict:
        return asdict(self)


class MaskedConv2d(nn.Conv2d):
    """2D convolution whose kernel sees only pixels before the centre in raster order
    (mask "A"), or before and at the centre (mask "B")."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask: str):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', not {mask!r}")
        k = kernel_size
        m = torch.zeros(k, k)
        m[: k // 2, :] = 1.0
        m[k // 2, : k // 2 + (1 if mask == "B" else 0)] = 1.0
        self.register_buffer("mask", m[None, None])

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class GatedResidualBlock(nn.Module):
    """x + W_1x1 (tanh(a) * sigmoid(b)), with [a, b] = masked conv B of x."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = MaskedConv2d(channels, 2 * channels, kernel_size, "B")
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return x + self.out(torch.tanh(a) * torch.sigmoid(b))


class PixelCNN(nn.Module):
    """Log-likelihood of (N, 1, H, W) images in [-1, 1] under a discretised logistic mixture."""

    def __init__(self, settings: PixelCNNSettings):
        super().__init__()
        self.settings = settings
        c = settings.channels
        self.first = MaskedConv2d(1, c, settings.first_kernel_size, "A")
        self.blocks = nn.ModuleList(
            GatedResidualBlock(c, settings.kernel_size) for _ in range(settings.n_blocks))
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(c, c, 1), nn.ELU(),
                                  nn.Conv2d(c, 3 * settings.n_mixtures, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Mixture parameters (N, 3K, H, W): logits, means, log-scales."""
        h = self.first(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def log_prob_pixels(self, x: Tensor) -> Tensor:
        """log p(x_i | x_<i) of every pixel (N, H, W) of images ``x`` (N, 1, H, W) in [-1, 1]
        (quantised here to the model's levels)."""
        xq = quantise(x, self.settings.n_levels)
        return discretised_logistic_mixture_log_prob(xq[:, 0], self(xq),
                                                     self.settings.n_levels)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) of every image (N,), in nats."""
        return self.log_prob_pixels(x).sum(dim=(1, 2))


def quantise(x: Tensor, n_levels: int) -> Tensor:
    """Round values in [-1, 1] to the nearest of n_levels equally spaced levels."""
    k = torch.round((x.clamp(-1.0, 1.0) + 1.0) * 0.5 * (n_levels - 1))
    return k * (2.0 / (n_levels - 1)) - 1.0


def discretised_logistic_mixture_log_prob(x: Tensor, params: Tensor, n_levels: int) -> Tensor:
    """log P(x) per pixel for quantised x (N, H, W) under a mixture of logistics discretised
    into n_levels bins on [-1, 1]; the end bins take the tails (they sum to 1 exactly)."""
    k = params.shape[1] // 3
    logits, mu, log_s = params[:, :k], params[:, k:2 * k], params[:, 2 * k:]
    log_s = log_s.clamp(min=-7.0)
    inv_s = torch.exp(-log_s)
    half_bin = 1.0 / (n_levels - 1)
    xc = x[:, None] - mu
    plus = inv_s * (xc + half_bin)
    minus = inv_s * (xc - half_bin)
    cdf_plus, cdf_minus = torch.sigmoid(plus), torch.sigmoid(minus)
    log_cdf_plus = plus - F.softplus(plus)           # log sigmoid(plus): lowest bin
    log_one_minus_cdf_minus = -F.softplus(minus)     # log(1 - sigmoid(minus)): highest bin
    delta = cdf_plus - cdf_minus
    mid = inv_s * xc
    # where the bin's probability underflows, its density at the bin centre times the width
    log_pdf_mid = mid - log_s - 2.0 * F.softplus(mid) + math.log(2.0 * half_bin)
    log_delta = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_pdf_mid)
    x_b = x[:, None].expand_as(mu)
    log_p = torch.where(x_b < -1.0 + half_bin, log_cdf_plus,
                        torch.where(x_b > 1.0 - half_bin, log_one_minus_cdf_minus, log_delta))
    return torch.logsumexp(log_p + F.log_softmax(logits, dim=1), dim=1)


def log_likelihood_ratio(model_obs: PixelCNN, model_arch: PixelCNN, x: Tensor
                         ) -> tuple[Tensor, Tensor]:
    """LLR = log p_obs(x) - log p_archetype(x): per image (N,) and per pixel (N, H, W)."""
    per_pixel = model_obs.log_prob_pixels(x) - model_arch.log_prob_pixels(x)
    return per_pixel.sum(dim=(1, 2)), per_pixel

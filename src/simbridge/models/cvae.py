"""Conditional VAE of ex-situ stellar-mass-fraction maps (the ex-situ posterior model).

Three CNNs trained together:

* the **condition encoder** maps the five observable maps (plus the galaxy mask) to one feature
  map per convolutional level and to a summary vector;
* the **encoder** maps the ex-situ map to a Gaussian latent q(z | x, c);
* the **decoder** maps a latent (and the summary) to the parameters of a per-pixel
  zero-one-inflated Beta likelihood of the ex-situ map (:mod:`simbridge.models.likelihood`);
  the latent enters at the bottom and, broadcast over the pixels, at every level.

The condition encoder's feature map of every level is concatenated to the encoder's and the
decoder's input at the same level (U-Net-like skips). The encoder and decoder take those features
as explicit arguments, so a test can check that every level reaches both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from simbridge.models.data import ConditionNormalizer
from simbridge.models.likelihood import N_PARAMS, zoib_log_prob, zoib_mean

#: Input channels of the condition encoder: the five condition maps and the galaxy mask.
N_CONDITION_CHANNELS = 6


@dataclass(frozen=True)
class CVAEArchitecture:
    """Shape of the cVAE: map size, conv channels per level, latent and summary sizes."""

    npix: int
    latent_dim: int = 10
    channels: tuple[int, ...] = field(default=(16, 32, 64))
    summary_dim: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.npix % (2 ** len(self.channels)):
            raise ValueError(
                f"maps of {self.npix} pixels cannot be halved {len(self.channels)} times "
                f"(one per level of channels {list(self.channels)}); use an npix divisible by "
                f"{2 ** len(self.channels)} or fewer levels"
            )

    @property
    def bottom_npix(self) -> int:
        """Side of the feature maps below the last level."""
        return self.npix // 2 ** len(self.channels)

    def to_dict(self) -> dict:
        """Plain-types form, stored in checkpoints."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by GroupNorm and SiLU (works at any batch size)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(_groups(c_out), c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.GroupNorm(_groups(c_out), c_out),
            nn.SiLU(),
        )


class ConditionEncoder(nn.Module):
    """Observable maps -> feature maps of every level (full resolution first) and a summary."""

    def __init__(self, arch: CVAEArchitecture):
        super().__init__()
        chans = arch.channels
        self.blocks = nn.ModuleList(
            ConvBlock(c_in, c_out)
            for c_in, c_out in zip((N_CONDITION_CHANNELS, *chans[:-1]), chans, strict=True)
        )
        flat = chans[-1] * arch.bottom_npix**2
        self.summary = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, arch.summary_dim), nn.SiLU(),
            nn.Linear(arch.summary_dim, arch.summary_dim),
        )

    def forward(self, cond: Tensor) -> tuple[list[Tensor], Tensor]:
        """Return ([f_0 (C_0, n, n), f_1 (C_1, n/2, n/2), ...], summary (B, S))."""
        features = []
        h = cond
        for block in self.blocks:
            h = block(h)
            features.append(h)
            h = F.avg_pool2d(h, 2)
        return features, self.summary(h)


class Encoder(nn.Module):
    """Ex-situ map and condition features -> mean and log-variance of q(z | x, c)."""

    def __init__(self, arch: CVAEArchitecture):
        super().__init__()
        chans = arch.channels
        c_prev = (1, *chans[:-1])
        self.blocks = nn.ModuleList(
            ConvBlock(cp + c, c) for cp, c in zip(c_prev, chans, strict=True)
        )
        flat = chans[-1] * arch.bottom_npix**2
        self.head = nn.Linear(flat + arch.summary_dim, 2 * arch.latent_dim)

    def forward(self, x: Tensor, features: Sequence[Tensor], summary: Tensor
                ) -> tuple[Tensor, Tensor]:
        """x: (B, 1, n, n) ex-situ map; returns mu, logvar of shape (B, latent_dim)."""
        if len(features) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} condition feature maps, "
                             f"got {len(features)}")
        h = x
        for block, skip in zip(self.blocks, features, strict=True):
            h = F.avg_pool2d(block(torch.cat([h, skip], dim=1)), 2)
        with torch.autocast(x.device.type, enabled=False):  # the latent in full precision
            flat = torch.cat([h.flatten(1), summary], dim=1).to(self.head.weight.dtype)
            mu, logvar = self.head(flat).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)


class Decoder(nn.Module):
    """Latent, summary and condition features -> raw ZOIB parameters of every pixel."""

    def __init__(self, arch: CVAEArchitecture):
        super().__init__()
        chans = arch.channels
        self.bottom_shape = (chans[-1], arch.bottom_npix, arch.bottom_npix)
        flat = chans[-1] * arch.bottom_npix**2
        self.stem = nn.Sequential(nn.Linear(arch.latent_dim + arch.summary_dim, flat), nn.SiLU())
        # level l (deepest first) takes the upsampled features of level l+1, the skip f_l and
        # the latent broadcast over the pixels (so z reaches every scale, not only the bottom)
        c_below = (*chans[1:], chans[-1])
        self.blocks = nn.ModuleList(
            ConvBlock(cb + c + arch.latent_dim, c) for cb, c in zip(c_below, chans, strict=True)
        )
        self.out = nn.Conv2d(chans[0], N_PARAMS, 1)

    def forward(self, z: Tensor, features: Sequence[Tensor], summary: Tensor) -> Tensor:
        """z: (B, latent_dim); returns raw likelihood parameters (B, N_PARAMS, n, n).

        :func:`simbridge.models.likelihood.zoib_mean` turns them into the expected map.
        """
        if len(features) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} condition feature maps, "
                             f"got {len(features)}")
        h = self.stem(torch.cat([z, summary], dim=1)).view(-1, *self.bottom_shape)
        for level in reversed(range(len(self.blocks))):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            zmap = z[:, :, None, None].to(h.dtype).expand(-1, -1, *h.shape[-2:])
            h = self.blocks[level](torch.cat([h, features[level], zmap], dim=1))
        with torch.autocast(h.device.type, enabled=False):  # bf16 would quantize the output
            return self.out(h.to(self.out.weight.dtype))


class ExsituCVAE(nn.Module):
    """The three networks of the conditional VAE, and the normalization of raw condition maps.

    ``forward`` takes the condition encoder's input (B, 6, n, n); ``condition`` makes it from
    raw maps of a split file with the training split's normalization.
    """

    def __init__(self, arch: CVAEArchitecture):
        super().__init__()
        self.arch = arch
        self.normalizer = ConditionNormalizer()
        self.condition_encoder = ConditionEncoder(arch)
        self.encoder = Encoder(arch)
        self.decoder = Decoder(arch)

    def condition(self, cond_raw: Tensor, mask: Tensor) -> Tensor:
        """Raw condition maps (B, 5, n, n) and mask (B, 1, n, n) -> network input (B, 6, n, n)."""
        return self.normalizer(cond_raw, mask)

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Likelihood of x given one posterior draw; returns (raw parameters, mu, logvar)."""
        features, summary = self.condition_encoder(cond)
        mu, logvar = self.encoder(x, features, summary)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(z, features, summary), mu, logvar


def masked_mse(x_hat: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """Per-sample mean squared error over galaxy pixels (mask == 1); shape (B,)."""
    mask = mask.to(x.dtype)
    se = ((x_hat.float() - x.float()) ** 2 * mask).flatten(1).sum(1)
    return se / mask.flatten(1).sum(1).clamp_min(1.0)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent dimensions; shape (B,)."""
    return gaussian_kl_per_dim(mu, logvar).sum(1)


def gaussian_kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of each latent dimension; shape (B, D)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)


def masked_nll(raw: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """Per-sample mean negative ZOIB log-likelihood over galaxy pixels (mask == 1); shape (B,).

    ``raw``: decoder output (B, N_PARAMS, n, n); ``x``, ``mask``: (B, 1, n, n).
    """
    mask = mask[:, 0].float()
    nll = -zoib_log_prob(raw, x[:, 0]) * mask
    return nll.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)


def elbo_loss(raw: Tensor, x: Tensor, mask: Tensor, mu: Tensor, logvar: Tensor,
              beta: float, free_bits: float = 0.0) -> dict[str, Tensor]:
    """Negative ELBO with KL weight beta: mean over the batch of the per-pixel ZOIB negative
    log-likelihood (averaged over galaxy pixels) + beta * KL.

    Pixels outside the galaxy mask carry no loss. ``free_bits`` > 0 (nats per latent
    dimension, Kingma et al. 2016) leaves the batch-mean KL of each dimension unpenalised
    below that value. Adam rescales even a tiny KL gradient to a full step, so without it the
    encoder can collapse onto the prior before the decoder, which also sees the conditions
    through the skips, learns to use z. The returned "kl" is the true KL; "mse" is the masked
    mean squared error of the likelihood's mean map (a monitor, not part of the loss).
    """
    recon = masked_nll(raw, x, mask).mean()
    kl_dims = gaussian_kl_per_dim(mu, logvar).mean(0)
    kl = kl_dims.sum()
    penalised = kl_dims.clamp_min(free_bits).sum() if free_bits > 0 else kl
    with torch.no_grad():
        mse = masked_mse(zoib_mean(raw)[:, None], x, mask).mean()
    return {"loss": recon + beta * penalised, "recon": recon, "kl": kl, "mse": mse}

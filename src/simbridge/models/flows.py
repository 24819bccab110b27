"""Conditional normalizing flow over the cVAE's latent space (zuko's masked autoregressive flow).

The flow models p(z | s), the distribution of the encoder's latent vectors given the condition
summary s. Latents and summaries are standardized with training-set statistics held as buffers,
and the log-density includes the Jacobian of that affine map, so ``log_prob`` is the density of
the raw latent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import zuko
from torch import Tensor, nn


class LatentFlow(nn.Module):
    """p(z | s): an affine standardization followed by a zuko MAF conditioned on s."""

    def __init__(self, latent_dim: int, summary_dim: int, transforms: int = 3,
                 hidden_features: Sequence[int] = (64, 64)):
        super().__init__()
        self.latent_dim = latent_dim
        self.summary_dim = summary_dim
        self._config = {"latent_dim": latent_dim, "summary_dim": summary_dim,
                        "transforms": transforms, "hidden_features": list(hidden_features)}
        self.maf = zuko.flows.MAF(features=latent_dim, context=summary_dim,
                                  transforms=transforms, hidden_features=list(hidden_features))
        self.register_buffer("z_shift", torch.zeros(latent_dim))
        self.register_buffer("z_scale", torch.ones(latent_dim))
        self.register_buffer("s_shift", torch.zeros(summary_dim))
        self.register_buffer("s_scale", torch.ones(summary_dim))

    def set_standardization(self, z: Tensor, s: Tensor, z_var: Tensor | None = None) -> None:
        """Standardize latents and summaries with their mean and standard deviation.

        ``z`` may be posterior means with per-sample variances ``z_var``: the scale is then that
        of the sampled latents, sqrt(var(mu) + mean(var)), which stays finite for a latent
        dimension the encoder does not use (mu = 0, var = 1).
        """
        var = z.var(0) + (z_var.mean(0) if z_var is not None else 0.0)
        self.z_shift.copy_(z.mean(0))
        self.z_scale.copy_(var.sqrt().clamp_min(1e-6))
        self.s_shift.copy_(s.mean(0))
        self.s_scale.copy_(s.std(0).clamp_min(1e-6))

    def _context(self, s: Tensor) -> Tensor:
        return (s.to(self.s_shift.dtype) - self.s_shift) / self.s_scale

    def log_prob(self, z: Tensor, s: Tensor) -> Tensor:
        """log p(z | s) of raw latents z (B, D) given summaries s (B, S); shape (B,).

        Always in the flow's own precision (float32 or float64), also under autocast.
        """
        with torch.autocast(z.device.type, enabled=False):
            u = (z.to(self.z_shift.dtype) - self.z_shift) / self.z_scale
            return self.maf(self._context(s)).log_prob(u) - torch.log(self.z_scale).sum()

    def sample(self, s: Tensor, n: int) -> Tensor:
        """n draws of z for each summary: (n, B, D), in the flow's precision."""
        with torch.autocast(s.device.type, enabled=False):
            u = self.maf(self._context(s)).sample((n,))
            return u * self.z_scale + self.z_shift

    def config(self) -> dict:
        """Constructor arguments, stored in checkpoints."""
        return dict(self._config)

"""Networks of the abundances branch: the CNN embedding of the abundance plane, the classifier."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_stack(channels: list[int]) -> tuple[nn.Sequential, int]:
    """Conv3x3-ReLU-MaxPool2 per level; returns the stack and its downsampling factor."""
    layers: list[nn.Module] = []
    c_in = 1
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    return nn.Sequential(*layers), 2 ** len(channels)


class PlaneEmbedding(nn.Module):
    """CNN embedding of a flattened n x n plane (plus ``n_extra`` scalars) to a summary vector.

    Input (B, n*n + n_extra): the plane row-major, then the extra inputs (step 2: rank and
    N_sub), which join the CNN features before the last layers. n must be divisible by
    input_pool x 2^len(channels).
    """

    def __init__(self, n_pix: int, channels: list[int], summary_dim: int, n_extra: int = 0,
                 input_pool: int = 1):
        super().__init__()
        self.n_pix, self.n_extra = n_pix, n_extra
        conv, factor = _conv_stack(list(channels))
        # optional sum-pooling of the input plane (input_pool x input_pool pixels): 4x cheaper
        # convolutions per halving, for CPU demo runs
        self.conv = nn.Sequential(nn.AvgPool2d(input_pool), conv) if input_pool > 1 else conv
        n_feat = channels[-1] * (n_pix // (factor * input_pool)) ** 2
        self.head = nn.Sequential(nn.Linear(n_feat + n_extra, 4 * summary_dim), nn.ReLU(),
                                  nn.Linear(4 * summary_dim, summary_dim))

    def forward(self, x: Tensor) -> Tensor:
        n2 = self.n_pix * self.n_pix
        plane = x[:, :n2].reshape(-1, 1, self.n_pix, self.n_pix)
        feats = self.conv(plane).flatten(1)
        if self.n_extra:
            feats = torch.cat([feats, x[:, n2:n2 + self.n_extra]], dim=1)
        return self.head(feats)


class _ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                                  nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                                  nn.BatchNorm2d(c_out))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.out = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.skip(x))


class SkipConnectionClassifier(nn.Module):
    """CNN with residual (skip-connection) blocks: plane (B, n, n) -> logits over N_sub classes."""

    def __init__(self, channels: list[int], n_classes: int, input_pool: int = 1):
        super().__init__()
        blocks: list[nn.Module] = [nn.AvgPool2d(input_pool)] if input_pool > 1 else []
        c_in = 1
        for c in channels:
            blocks.append(_ResidualBlock(c_in, c))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 64),
                                  nn.ReLU(), nn.Linear(64, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(x.unsqueeze(1)))

"""3D networks of the two-phase dm2gal model: a recurrent residual U-Net (R2U-Net, Alom et al.
2018) and an Inception-style alternative (parallel 1, 3 and dilated-3 kernels), both fully
convolutional and shape-preserving (input side divisible by 2^(levels - 1) for the U-Net)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RecurrentConv(nn.Module):
    """Recurrent convolutional layer: x_{t+1} = conv(x + x_t), t steps, shared weights."""

    def __init__(self, channels: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.conv = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1),
                                  nn.BatchNorm3d(channels), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        for _ in range(self.steps):
            out = self.conv(x + out)
        return out


class R2Block(nn.Module):
    """Recurrent residual block: 1x1 projection, two recurrent layers, residual sum."""

    def __init__(self, c_in: int, c_out: int, steps: int) -> None:
        super().__init__()
        self.project = nn.Conv3d(c_in, c_out, 1)
        self.body = nn.Sequential(RecurrentConv(c_out, steps), RecurrentConv(c_out, steps))

    def forward(self, x: Tensor) -> Tensor:
        x = self.project(x)
        return x + self.body(x)


class R2UNet3D(nn.Module):
    """R2U-Net on 3D cubes: one output channel per voxel (a logit or a count's log-rate)."""

    def __init__(self, channels: list[int], recurrence_steps: int = 2, in_channels: int = 1
                 ) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.down.append(R2Block(c_prev, c, recurrence_steps))
            c_prev = c
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_hi, c_lo in zip(reversed(channels[:-1]), reversed(channels[1:]), strict=True):
            self.up.append(nn.ConvTranspose3d(c_lo, c_hi, 2, stride=2))
            self.dec.append(R2Block(2 * c_hi, c_hi, recurrence_steps))
        self.head = nn.Conv3d(channels[0], 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)[:, 0]


class InceptionBlock3D(nn.Module):
    """Parallel 1x1x1, 3x3x3 and dilated 3x3x3 (5^3 field) branches, concatenated."""

    def __init__(self, c_in: int, c_branch: int) -> None:
        super().__init__()

        def branch(kernel: int, dilation: int) -> nn.Module:
            pad = dilation * (kernel // 2)
            return nn.Sequential(nn.Conv3d(c_in, c_branch, kernel, padding=pad,
                                           dilation=dilation),
                                 nn.BatchNorm3d(c_branch), nn.ReLU(inplace=True))

        self.branches = nn.ModuleList([branch(1, 1), branch(3, 1), branch(3, 2)])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class Inception3D(nn.Module):
    """Stack of Inception blocks (no pooling) with a 1x1 head."""

    def __init__(self, channels: list[int], in_channels: int = 1) -> None:
        super().__init__()
        blocks = []
        c_prev = in_channels
        for c in channels:
            blocks.append(InceptionBlock3D(c_prev, c))
            c_prev = 3 * c
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv3d(c_prev, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))[:, 0]


def build_network(architecture: str, settings: dict) -> nn.Module:
    """'r2unet' or 'inception' from the dm2gal.model config section."""
    if architecture == "r2unet":
        return R2UNet3D(list(settings["channels"]), int(settings["recurrence_steps"]))
    if architecture == "inception":
        return Inception3D(list(settings["inception_channels"]))
    raise ValueError(f"unknown dm2gal architecture {architecture!r} (r2unet, inception)")

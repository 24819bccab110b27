"""Reading the split files for training: random access by sample, normalization on the device.

The loader returns raw float32 maps; :class:`ConditionNormalizer` turns them into network inputs
on the training device (log of surface density, dispersion and metallicity, then per-channel
standardization over galaxy pixels of the training split; zero outside the galaxy), so data
loader workers only read and decompress HDF5 chunks.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from simbridge.errors import SimBridgeInputError

#: Datasets of a split file that training reads.
REQUIRED = ("conditions", "exsitu_fraction_map", "galaxy_mask")
#: Channels transformed with log10 before standardization (surface density, dispersion, Z).
#: Dispersion uses log10(1 + sigma / km s^-1): single-particle pixels have sigma = 0.
LOG_CHANNELS = {0: 0.0, 2: 1.0, 4: 0.0}
#: Floor of log10 arguments (a galaxy pixel always holds mass, but Z may be 0 in a toy file).
_LOG_FLOOR = 1e-12
_FIX_DATASET = "rebuild the dataset with `snakemake --cores 2 dataset` (or --forcerun build_split)"


def check_split_file(path: str | Path, block: int = 256) -> dict:
    """Check that a split file holds the training datasets, with finite values; return its shape.

    Reads the file in blocks of samples (contiguous reads), so a NaN anywhere is found before
    training starts. Raises SimBridgeInputError naming the file, the dataset and the sample.
    """
    path = Path(path)
    if not path.is_file():
        raise SimBridgeInputError("split file not found", path, _FIX_DATASET)
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise SimBridgeInputError(f"split file cannot be opened as HDF5 ({err})", path,
                                  _FIX_DATASET) from None
    with h5:
        missing = [k for k in REQUIRED if k not in h5]
        if missing:
            raise SimBridgeInputError(f"split file lacks the dataset(s) {missing}", path,
                                      _FIX_DATASET)
        n, n_chan, npix, npix2 = h5["conditions"].shape
        if n_chan != 5 or npix != npix2:
            raise SimBridgeInputError(
                f"conditions have shape {h5['conditions'].shape}; expected (N, 5, n, n)", path,
                _FIX_DATASET)
        for key in REQUIRED[1:]:
            if h5[key].shape != (n, npix, npix):
                raise SimBridgeInputError(
                    f"{key} has shape {h5[key].shape}; expected {(n, npix, npix)}", path,
                    _FIX_DATASET)
        if n == 0:
            raise SimBridgeInputError(
                "split file holds no sample", path,
                "lower tng.stellar_mass_min_msun or change splits.fractions so that every split "
                "receives galaxies")
        for start in range(0, n, block):
            stop = min(start + block, n)
            try:
                arrays = {k: h5[k][start:stop] for k in REQUIRED}
            except OSError as err:
                raise SimBridgeInputError(
                    f"samples {start}-{stop - 1} cannot be read ({err}); the file is truncated "
                    "or corrupt", path, _FIX_DATASET) from None
            for key, arr in arrays.items():
                bad = ~np.isfinite(arr)
                if bad.any():
                    first = start + int(np.argwhere(bad)[0][0])
                    raise SimBridgeInputError(
                        f"{key} holds NaN or inf values (first in sample {first})", path,
                        _FIX_DATASET)
            target = arrays["exsitu_fraction_map"]
            if target.min() < 0 or target.max() > 1:
                raise SimBridgeInputError(
                    "exsitu_fraction_map has values outside [0, 1]", path, _FIX_DATASET)
    return {"n_samples": n, "npix": npix}


class ExsituMapDataset(Dataset):
    """Samples of one split file by random access: conditions, ex-situ map and mask.

    Items are (conditions (5, n, n), target (1, n, n), mask (1, n, n)) float32 tensors, raw.
    The HDF5 file opens lazily in each process (h5py handles do not survive a fork).
    """

    def __init__(self, path: str | Path, check: bool = True):
        self.path = Path(path)
        if check:
            shape = check_split_file(self.path)
        else:
            with h5py.File(self.path, "r") as h5:
                shape = {"n_samples": h5["conditions"].shape[0], "npix": h5["conditions"].shape[-1]}
        self.n_samples, self.npix = int(shape["n_samples"]), int(shape["npix"])
        self._h5: h5py.File | None = None

    def __len__(self) -> int:
        return self.n_samples

    def _file(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        h5 = self._file()
        k = int(i)
        cond = torch.from_numpy(h5["conditions"][k])
        target = torch.from_numpy(h5["exsitu_fraction_map"][k][None].astype(np.float32))
        mask = torch.from_numpy(h5["galaxy_mask"][k][None].astype(np.float32))
        return cond, target, mask

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        return state


def _transform(cond: Tensor) -> Tensor:
    """Log-transform the positive channels (before standardization)."""
    out = cond.clone()
    for ch, offset in LOG_CHANNELS.items():
        out[:, ch] = torch.log10(cond[:, ch].clamp_min(0.0) + offset + _LOG_FLOOR)
    return out


class ConditionNormalizer(torch.nn.Module):
    """Raw condition maps and mask -> the condition encoder's input (B, 6, n, n).

    Channels 0-4: transformed, standardized condition maps on galaxy pixels, 0 elsewhere;
    channel 5: the galaxy mask.
    """

    def __init__(self, mean: Tensor | None = None, std: Tensor | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(5) if mean is None else mean.float())
        self.register_buffer("std", torch.ones(5) if std is None else std.float())

    @classmethod
    def fit(cls, dataset: ExsituMapDataset, block: int = 256) -> ConditionNormalizer:
        """Per-channel mean and std of the transformed maps over the galaxy pixels of a split."""
        total = torch.zeros(5, dtype=torch.float64)
        total_sq = torch.zeros(5, dtype=torch.float64)
        count = 0.0
        with h5py.File(dataset.path, "r") as h5:
            for start in range(0, len(dataset), block):
                cond = torch.from_numpy(h5["conditions"][start:start + block])
                mask = torch.from_numpy(h5["galaxy_mask"][start:start + block].astype(bool))
                t = _transform(cond).double().permute(1, 0, 2, 3)[:, mask]
                total += t.sum(1)
                total_sq += (t**2).sum(1)
                count += float(mask.sum())
        if count == 0:
            raise SimBridgeInputError("the training split has no galaxy pixel", dataset.path,
                                      _FIX_DATASET)
        mean = total / count
        std = (total_sq / count - mean**2).clamp_min(0.0).sqrt().clamp_min(1e-6)
        return cls(mean, std)

    def forward(self, cond: Tensor, mask: Tensor) -> Tensor:
        """cond (B, 5, n, n) raw, mask (B, 1, n, n) -> (B, 6, n, n)."""
        t = (_transform(cond.float()) - self.mean[:, None, None]) / self.std[:, None, None]
        return torch.cat([t * mask, mask], dim=1)


def augment(cond: Tensor, target: Tensor, mask: Tensor, generator: torch.Generator
            ) -> tuple[Tensor, Tensor, Tensor]:
    """Random 90-degree rotation and mirror flip per sample (the 8 symmetries of the square).

    Rotating or mirroring the sky leaves line-of-sight velocities valid, so every channel is
    moved alike. Draws come from ``generator`` (seeded per epoch).
    """
    b = cond.shape[0]
    k = torch.randint(0, 4, (b,), generator=generator)
    flip = torch.randint(0, 2, (b,), generator=generator)
    outs = [cond.clone(), target.clone(), mask.clone()]
    for kk in range(4):
        for ff in range(2):
            sel = ((k == kk) & (flip == ff)).nonzero().flatten()
            if len(sel) == 0 or (kk == 0 and ff == 0):
                continue
            for out, src in zip(outs, (cond, target, mask), strict=True):
                x = torch.rot90(src[sel], kk, dims=(-2, -1))
                out[sel] = torch.flip(x, dims=(-1,)) if ff else x
    return outs[0], outs[1], outs[2]

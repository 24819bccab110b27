"""Reading the split files for training: batches from memory or contiguous blocks, normalization
on the device.

:func:`batch_loader` yields (conditions, target, mask) batches of a split in a given order. A
split that fits the loader's memory budget (:func:`set_memory_budget`; default half of the
memory available to the job) is decompressed into memory once and batches are gathered from
it; a larger split is read from its HDF5 file in contiguous runs of samples. Either way the
sample order is first made block-local (:func:`block_order`: every window of
``WINDOW_BLOCKS`` blocks of ``BLOCK_SAMPLES`` consecutive samples is visited as a whole, in a
shuffled block order), so both modes, on any machine and with any number of loader workers,
give the same batches. The loader returns raw float32 maps; :class:`ConditionNormalizer` turns
them into network inputs on the training device (log of surface density, dispersion and
metallicity, then per-channel standardization over galaxy pixels of the training split; zero
outside the galaxy), so data loader workers only read and decompress HDF5 chunks.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from simbridge.errors import SimBridgeInputError
from simbridge.io import open_hdf5

log = logging.getLogger(__name__)

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
    with open_hdf5(path, "split file", _FIX_DATASET, required=REQUIRED) as h5:
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


#: Datasets of a sample that the loader reads (float32, float32, uint8 in memory).
_SAMPLE_ARRAYS = REQUIRED
#: Consecutive samples of a block, and blocks per shuffle window (see :func:`block_order`):
#: a window holds 1,024 samples (about 420 MB at 128 x 128 pixels).
BLOCK_SAMPLES = 32
WINDOW_BLOCKS = 32
#: Samples a loader item reads from the file in block mode (rounded to whole batches).
GROUP_SAMPLES = 256
#: Fraction of the available memory the automatic budget gives to splits held in memory.
_AUTO_BUDGET_FRACTION = 0.5
#: The process-wide memory budget in bytes (None: automatic) and the bytes already held.
_budget: dict[str, int | None] = {"bytes": None, "held": 0}


def set_memory_budget(gigabytes: float | None) -> None:
    """Set the memory that splits held in memory may take (GB, 1e9 bytes); None: automatic
    (half of the memory available to the job, see :func:`available_memory_bytes`); 0: always
    read from the file in blocks. Called by the workflow's scripts (exsitu_model.loader_memory_gb).
    """
    _budget["bytes"] = None if gigabytes is None else int(float(gigabytes) * 1e9)


def available_memory_bytes() -> int:
    """Memory this process may still use: MemAvailable, capped by a cgroup (SLURM) limit."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            avail = min(avail, max(int(limit) - usage, 0))
        break
    return int(avail)


def memory_budget_bytes() -> int:
    """The budget for splits held in memory, in bytes, before what is already held."""
    if _budget["bytes"] is not None:
        return int(_budget["bytes"])
    return int(_AUTO_BUDGET_FRACTION * (available_memory_bytes() + int(_budget["held"] or 0)))


def block_order(order: np.ndarray, block: int = BLOCK_SAMPLES,
                window_blocks: int = WINDOW_BLOCKS) -> np.ndarray:
    """Make a sample order block-local, keeping its randomness; a pure function of ``order``.

    Blocks (``block`` consecutive sample indices) are ranked by their first appearance in
    ``order``; consecutive ranks form windows of ``window_blocks`` blocks, and the samples of a
    window follow in their order within ``order``. For a uniformly shuffled ``order`` (e.g.
    :func:`simbridge.models.training.epoch_order` of (seed, epoch)) this is a shuffled block
    order with the samples of every window shuffled, so a reader decompresses each window's
    blocks as contiguous runs. An order of at most one window (e.g. the demo splits) and the
    sequential order are returned unchanged.
    """
    order = np.asarray(order, dtype=np.int64)
    if len(order) <= block * window_blocks:
        return order
    blocks = order // block
    ids, first = np.unique(blocks, return_index=True)
    rank = np.empty(int(ids.max()) + 1, dtype=np.int64)
    rank[ids[np.argsort(first, kind="stable")]] = np.arange(len(ids))
    window = rank[blocks] // window_blocks
    return order[np.argsort(window, kind="stable")]


class ExsituMapDataset(Dataset):
    """Samples of one split file: conditions, ex-situ map and mask.

    Items are (conditions (5, n, n), target (1, n, n), mask (1, n, n)) float32 tensors, raw.
    :meth:`read_samples` reads many at once: from memory once :meth:`hold_in_memory` has
    loaded the split, else from the file in contiguous runs. The HDF5 file opens lazily in each
    process (h5py handles do not survive a fork).
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
        self._h5_pid = 0
        self._memory: dict[str, np.ndarray] | None = None
        self._release: weakref.finalize | None = None
        self._logged_blocks = False
        #: batch_loader passes over this split so far
        self.passes = 0

    def __len__(self) -> int:
        return self.n_samples

    @property
    def nbytes(self) -> int:
        """Bytes the split takes in memory (float32 maps, uint8 mask)."""
        return self.n_samples * self.npix**2 * (5 * 4 + 4 + 1)

    @property
    def in_memory(self) -> bool:
        return self._memory is not None

    def _file(self) -> h5py.File:
        # a handle opened before a fork (DataLoader workers) is not used in the child
        if self._h5 is None or self._h5_pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as err:
                raise SimBridgeInputError(f"split file cannot be read ({err})", self.path,
                                          _FIX_DATASET) from None
            self._h5_pid = os.getpid()
        return self._h5

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        cond, target, mask = self.read_samples(np.array([int(i)]))
        return cond[0], target[0], mask[0]

    def hold_in_memory(self, budget_bytes: int | None = None) -> bool:
        """Decompress the split into memory if it fits the budget (default: the process-wide
        one, less what other splits hold); log the choice. Returns whether it is held."""
        if self._memory is not None:
            return True
        budget = memory_budget_bytes() if budget_bytes is None else int(budget_bytes)
        free = budget - int(_budget["held"] or 0)
        gb = self.nbytes / 1e9
        if self.nbytes > free:
            if self._logged_blocks:
                return False
            self._logged_blocks = True
            log.info("%s: %d samples (%.2f GB) exceed the loader's memory budget (%.2f GB "
                     "free of %.2f GB): read in blocks of %d samples, %d blocks per shuffle "
                     "window", self.path.name, self.n_samples, gb, max(free, 0) / 1e9,
                     budget / 1e9, BLOCK_SAMPLES, WINDOW_BLOCKS)
            return False
        self._memory = self._read_runs(np.arange(self.n_samples))
        _budget["held"] = int(_budget["held"] or 0) + self.nbytes
        self._release = weakref.finalize(self, _release_bytes, self.nbytes)
        log.info("%s: %d samples (%.2f GB) held in memory (budget %.2f GB)", self.path.name,
                 self.n_samples, gb, budget / 1e9)
        return True

    def release_memory(self) -> None:
        """Drop the in-memory copy (later reads go to the file)."""
        if self._memory is not None:
            self._memory = None
            self._release()

    def _read_runs(self, unique_sorted: np.ndarray) -> dict[str, np.ndarray]:
        """Samples at sorted, distinct indices, read from the file as contiguous runs."""
        h5 = self._file()
        k, n = len(unique_sorted), self.npix
        out = {"conditions": np.empty((k, 5, n, n), np.float32),
               "exsitu_fraction_map": np.empty((k, n, n), np.float32),
               "galaxy_mask": np.empty((k, n, n), np.uint8)}
        breaks = np.flatnonzero(np.diff(unique_sorted) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [k]])
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            lo, hi = int(unique_sorted[a]), int(unique_sorted[b - 1]) + 1
            try:
                for name in _SAMPLE_ARRAYS:
                    src = h5[name]
                    if src.dtype == out[name].dtype:
                        src.read_direct(out[name], np.s_[lo:hi], np.s_[a:b])
                    else:
                        out[name][a:b] = src[lo:hi]
            except OSError as err:
                raise SimBridgeInputError(
                    f"samples {lo}-{hi - 1} cannot be read ({err}); the file is truncated or "
                    "corrupt", self.path, _FIX_DATASET) from None
        return out

    def read_samples(self, indices: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        """Samples at ``indices`` (any order, repeats allowed) as batched float32 tensors:
        conditions (B, 5, n, n), target (B, 1, n, n), mask (B, 1, n, n)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._memory is not None:
            arrays, pos = self._memory, indices
        else:
            unique = np.unique(indices)
            arrays, pos = self._read_runs(unique), np.searchsorted(unique, indices)
        cond = torch.from_numpy(arrays["conditions"][pos])
        target = torch.from_numpy(arrays["exsitu_fraction_map"][pos][:, None])
        mask = torch.from_numpy(arrays["galaxy_mask"][pos][:, None].astype(np.float32))
        return cond, target, mask

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_release"] = None  # a worker's copy does not count against the budget
        return state


def _release_bytes(nbytes: int) -> None:
    _budget["held"] = max(0, int(_budget["held"] or 0) - nbytes)


class _BatchGroups(Dataset):
    """Item g: the batches of group g (consecutive batches of ``order``), read at once."""

    def __init__(self, ds: ExsituMapDataset, order: np.ndarray, batch_size: int,
                 batches_per_group: int):
        self.ds, self.order, self.batch_size = ds, order, batch_size
        self.n_batches = -(-len(order) // batch_size)
        self.per_group = batches_per_group

    def __len__(self) -> int:
        return -(-self.n_batches // self.per_group)

    def __getitem__(self, g: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        lo = g * self.per_group * self.batch_size
        hi = min((g + 1) * self.per_group * self.batch_size, len(self.order))
        cond, target, mask = self.ds.read_samples(self.order[lo:hi])
        return [(cond[s:s + self.batch_size], target[s:s + self.batch_size],
                 mask[s:s + self.batch_size]) for s in range(0, hi - lo, self.batch_size)]


class BatchLoader:
    """Iterable of (conditions, target, mask) batches; ``len`` is the number of batches."""

    def __init__(self, groups: _BatchGroups, loader: DataLoader):
        self.groups, self.loader = groups, loader

    def __len__(self) -> int:
        return self.groups.n_batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        for group in self.loader:
            yield from (tuple(b) for b in group)


def batch_loader(ds: ExsituMapDataset, indices: np.ndarray | None, batch_size: int,
                 workers: int = 0, pin_memory: bool = False) -> BatchLoader:
    """Batches of ``ds`` in the order :func:`block_order` makes of ``indices`` (None: 0..N-1).

    The split is held in memory when it fits the budget (decided and logged at the first
    shuffled or repeated pass; a first sequential pass reads the file), else each loader item
    reads a few batches of one window from the file, in contiguous runs. ``workers``
    processes (torch DataLoader) read items in parallel; the batches, their order and their
    contents do not depend on the mode or on ``workers``.
    """
    order = block_order(np.arange(len(ds)) if indices is None else np.asarray(indices),
                        BLOCK_SAMPLES, WINDOW_BLOCKS)
    # a single sequential pass (latents of a split, evaluation) reads contiguous runs anyway:
    # load into memory for shuffled orders and for a split read a second time (validation)
    ds.passes += 1
    in_memory = ds.hold_in_memory() if indices is not None or ds.passes > 1 else ds.in_memory
    # from the file, an item reads about GROUP_SAMPLES samples of one window (about 100 MB at
    # 128 px): the window's blocks stay in the page cache while its items are read
    per_group = 1 if in_memory else max(1, GROUP_SAMPLES // batch_size)
    groups = _BatchGroups(ds, order, batch_size, per_group)
    prefetch = (4 if in_memory else 2) if workers else None
    loader = DataLoader(groups, batch_size=None, shuffle=False, num_workers=workers,
                        pin_memory=pin_memory, persistent_workers=False,
                        prefetch_factor=prefetch)
    return BatchLoader(groups, loader)


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

"""Is the data loader the bottleneck of cVAE training?

Times, in one run, (1) the training loader (simbridge.models.data.batch_loader: the split held
in memory when it fits the loader's memory budget, else read from the file in contiguous
blocks in a shuffled block order), in-process and with N worker processes, batches moved to the
device, and (2) the model: one optimizer step of the cVAE (forward, ELBO, backward, Adam) on
batches already on the device (bf16 autocast on CUDA). Prints both in samples per second and
their ratio; a ratio above 1 means the GPU/CPU never waits for data.

    python benchmarks/bench_training.py                       # 128 px, the full configuration
    python benchmarks/bench_training.py --dataset results/tng/TNG-demo/dataset/train.h5 \\
        --channels 8,16,32 --workers 0                        # the demo dataset and model
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from simbridge.models.cvae import CVAEArchitecture, ExsituCVAE, elbo_loss
from simbridge.models.data import ExsituMapDataset, batch_loader, set_memory_budget
from simbridge.models.training import autocast, epoch_order, select_device


def synthetic_split(path: Path, n: int, npix: int, seed: int = 0) -> Path:
    """A split file with the dataset's layout (one sample per lzf chunk) and galaxy-like maps:
    values inside a disk of random size, zeros outside (as real maps compress)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:npix, :npix] - (npix - 1) / 2
    r = np.hypot(x, y) / (npix / 2)
    with h5py.File(path, "w") as h5:
        cond = h5.create_dataset("conditions", (n, 5, npix, npix), "f4",
                                 chunks=(1, 5, npix, npix), compression="lzf")
        frac = h5.create_dataset("exsitu_fraction_map", (n, npix, npix), "f4",
                                 chunks=(1, npix, npix), compression="lzf")
        mask = h5.create_dataset("galaxy_mask", (n, npix, npix), "u1",
                                 chunks=(1, npix, npix), compression="lzf")
        for i in range(n):
            m = r < rng.uniform(0.5, 0.9)
            c = rng.lognormal(0, 1, (5, npix, npix)).astype("f4") * m
            cond[i] = c
            frac[i] = rng.uniform(0, 1, (npix, npix)).astype("f4") * m
            mask[i] = m
    return path


def loader_rate(ds: ExsituMapDataset, batch: int, workers: int, device: torch.device,
                epochs: int) -> float:
    """Samples per second of the training loader over epochs of seeded shuffled orders,
    delivered to the device (the split's one-off load into memory is not counted)."""
    ds.hold_in_memory()
    n = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(len(ds), 0, epoch)
        for cond, target, mask in batch_loader(ds, order, batch, workers,
                                               pin_memory=device.type == "cuda"):
            cond = cond.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            mask = mask.to(device, non_blocking=True)
            n += len(cond)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def model_rate(arch: CVAEArchitecture, batch: int, device: torch.device, steps: int) -> float:
    """Samples per second of cVAE optimizer steps on batches already on the device."""
    torch.manual_seed(0)
    model = ExsituCVAE(arch).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = arch.npix
    cond = torch.rand(batch, 5, n, n, device=device) + 0.1
    mask = (torch.rand(batch, 1, n, n, device=device) > 0.5).float()
    target = torch.rand(batch, 1, n, n, device=device) * mask

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            x_hat, mu, logvar = model(target, model.condition(cond, mask))
        elbo_loss(x_hat, target, mask, mu, logvar, 7e-5)["loss"].backward()
        opt.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, help="a split file (default: a synthetic one)")
    ap.add_argument("--npix", type=int, default=128)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--channels", default="32,64,128,256")
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=2, help="passes of the loader over the file")
    ap.add_argument("--memory-gb", type=float, default=None,
                    help="loader memory budget (default: automatic; 0: read in blocks)")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    args = ap.parse_args()
    device = select_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dataset or synthetic_split(Path(tmp) / "train.h5", args.samples, args.npix)
        ds = ExsituMapDataset(path, check=False)
        arch = CVAEArchitecture(npix=ds.npix, latent_dim=args.latent,
                                channels=tuple(int(c) for c in args.channels.split(",")))
        rates = {}
        set_memory_budget(args.memory_gb)
        t0 = time.perf_counter()
        auto_memory = ds.hold_in_memory()
        load_rate = len(ds) / (time.perf_counter() - t0) if auto_memory else None
        label = "in memory" if auto_memory else "blocks from the file"
        worker_counts = sorted({0, args.workers})
        for w in worker_counts:
            rates[f"{label}, {w} workers"] = loader_rate(ds, args.batch_size, w, device,
                                                         args.epochs)
        if auto_memory:  # the mode of splits that do not fit: read in blocks
            ds.release_memory()
            set_memory_budget(0)
            for w in worker_counts:
                rates[f"blocks from the file, {w} workers"] = loader_rate(
                    ds, args.batch_size, w, device, args.epochs)
        model = model_rate(arch, args.batch_size, device, args.steps)
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{threads}"
    print(f"device {name}; {len(ds)} samples of {ds.npix} px ({ds.nbytes / 1e9:.2f} GB in "
          f"memory); batch {args.batch_size}; channels {list(arch.channels)}")
    print(f"automatic choice (memory budget {'auto' if args.memory_gb is None else args.memory_gb}"
          f" GB): {label}")
    if load_rate is not None:
        print(f"one-off load into memory:                     {load_rate:10.0f} samples/s")
    for key, rate in rates.items():
        print(f"loader ({key}):{' ' * max(1, 32 - len(key))}{rate:10.0f} samples/s")
    print(f"model step (forward+backward+Adam):            {model:10.0f} samples/s")
    for key, rate in rates.items():
        verdict = "loader is not the bottleneck" if rate > model else "LOADER IS THE BOTTLENECK"
        print(f"loader ({key}) / model = {rate / model:.2f}  ({verdict})")


if __name__ == "__main__":
    main()

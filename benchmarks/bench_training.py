"""Is the data loader the bottleneck of cVAE training?

Times, in one run, (1) the loader: random-access reads of split-file samples through a torch
DataLoader with N workers, moved to the device, and (2) the model: one optimizer step of the cVAE
(forward, ELBO, backward, Adam) on batches already on the device (bf16 autocast on CUDA). Prints
both in samples per second and their ratio; a ratio above 1 means the GPU/CPU never waits for data.

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
from torch.utils.data import DataLoader

from simbridge.models.cvae import CVAEArchitecture, ExsituCVAE, elbo_loss
from simbridge.models.data import ExsituMapDataset
from simbridge.models.training import autocast, select_device


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
    """Samples per second through the DataLoader in a random order, delivered to the device."""
    rng = np.random.default_rng(0)
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        loader = DataLoader(ds, batch_size=batch, sampler=rng.permutation(len(ds)).tolist(),
                            num_workers=workers, pin_memory=device.type == "cuda",
                            prefetch_factor=4 if workers else None)
        for cond, target, mask in loader:
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
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    args = ap.parse_args()
    device = select_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dataset or synthetic_split(Path(tmp) / "train.h5", args.samples, args.npix)
        ds = ExsituMapDataset(path, check=False)
        arch = CVAEArchitecture(npix=ds.npix, latent_dim=args.latent,
                                channels=tuple(int(c) for c in args.channels.split(",")))
        loader = loader_rate(ds, args.batch_size, args.workers, device, args.epochs)
        model = model_rate(arch, args.batch_size, device, args.steps)
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{threads}"
    print(f"device {name}; {len(ds)} samples of {ds.npix} px; batch {args.batch_size}; "
          f"channels {list(arch.channels)}")
    print(f"loader ({args.workers} workers, random access): {loader:10.0f} samples/s")
    print(f"model step (forward+backward+Adam):       {model:10.0f} samples/s")
    verdict = "loader is not the bottleneck" if loader > model else "LOADER IS THE BOTTLENECK"
    print(f"loader / model = {loader / model:.2f}  ({verdict})")


if __name__ == "__main__":
    main()

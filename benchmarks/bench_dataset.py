"""Assembling split files: raw-chunk copy vs decompress-and-recompress through h5py.

build_split copies the compressed chunks (one sample each) of the batch files as they are. The
reference reads the samples as arrays and writes them again (LZF decode + encode). Both give
identical datasets (checked); the ratio of their run times is printed.

    python benchmarks/bench_dataset.py [--n-samples 400] [--npix 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from simbridge.dataset.build import MAP_DATASETS, copy_sample_chunks
from simbridge.extract.tng_maps import create_sample_datasets


def fill(path: Path, n: int, npix: int, rng: np.random.Generator) -> None:
    """A batch-like file with smooth, compressible maps."""
    with h5py.File(path, "w") as h5:
        create_sample_datasets(h5, n, npix)
        yy, xx = np.mgrid[:npix, :npix] / npix
        for i in range(n):
            blob = np.exp(-((xx - rng.uniform()) ** 2 + (yy - rng.uniform()) ** 2) * 20)
            h5["conditions"][i] = (blob * rng.uniform(1, 5, (5, 1, 1))).astype(np.float32)
            h5["exsitu_fraction_map"][i] = blob.astype(np.float32)
            h5["particle_count"][i] = (blob * 50).astype(np.int32)
            h5["galaxy_mask"][i] = (blob > 0.1).astype(np.uint8)
            h5["rotation"][i] = np.eye(3)


def copy(src_path: Path, dst_path: Path, n: int, npix: int, raw: bool) -> float:
    """Copy every other sample (as a split takes a subset); returns seconds."""
    src_idx = np.arange(0, n, 2)
    dst_idx = np.arange(len(src_idx))
    t0 = time.perf_counter()
    with h5py.File(src_path) as src, h5py.File(dst_path, "w") as dst:
        create_sample_datasets(dst, len(src_idx), npix)
        for name in MAP_DATASETS:
            if raw:
                copy_sample_chunks(src[name], dst[name], src_idx, dst_idx)
            else:
                for i, j in zip(src_idx, dst_idx, strict=True):
                    dst[name][j] = src[name][i]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=400)
    parser.add_argument("--npix", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fill(tmp / "batch.h5", args.n_samples, args.npix, np.random.default_rng(0))
        t_raw = min(copy(tmp / "batch.h5", tmp / "raw.h5", args.n_samples, args.npix, True)
                    for _ in range(3))
        t_ref = min(copy(tmp / "batch.h5", tmp / "ref.h5", args.n_samples, args.npix, False)
                    for _ in range(3))
        with h5py.File(tmp / "raw.h5") as a, h5py.File(tmp / "ref.h5") as b:
            for name in MAP_DATASETS:
                np.testing.assert_array_equal(a[name][...], b[name][...])
    print(f"{args.n_samples // 2} of {args.n_samples} samples of {args.npix}^2 pixels "
          "(identical); best of 3")
    print(f"  raw chunk copy {t_raw:7.3f} s | read + write {t_ref:7.3f} s | "
          f"ratio {t_ref / t_raw:5.1f}x")


if __name__ == "__main__":
    main()

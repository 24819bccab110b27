"""Superposed halos: one sparse (membership x templates) product per chunk vs a per-sample loop.

``superpose_to_file`` writes X = M @ T chunk by chunk (M: samples x templates, ones; T: the
flattened 64x64 building-block histograms). The reference sums each sample's member histograms
one sample at a time, as CASBI does. Both give identical sums (checked on the looped subset);
the loop is timed on ``--loop-samples`` and extrapolated; the ratio is printed.

    python benchmarks/bench_superpose.py [--n-templates 300] [--sets-per-n-sub 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from simbridge.dataset.superpose import membership_matrix, superpose_loop, superpose_to_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-templates", type=int, default=300)
    parser.add_argument("--sets-per-n-sub", type=int, default=1000)
    parser.add_argument("--n-sub-range", type=int, nargs=2, default=[2, 100])
    parser.add_argument("--n-bins", type=int, default=64)
    parser.add_argument("--chunk-samples", type=int, default=4096)
    parser.add_argument("--loop-samples", type=int, default=5000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.n_bins
    # sparse-ish templates like real abundance planes (a few hundred stars each)
    templates = np.zeros((args.n_templates, n, n), dtype=np.float32)
    for t in range(args.n_templates):
        i, j = rng.normal(n / 2, n / 8, (2, 400)).astype(int).clip(0, n - 1)
        np.add.at(templates[t], (i, j), 1.0)
    lo, hi = args.n_sub_range
    sets = [np.sort(rng.choice(args.n_templates, k, replace=False))
            for k in range(lo, hi + 1) for _ in range(args.sets_per_n_sub)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.h5"
        t0 = time.perf_counter()
        membership = membership_matrix(sets, sets, args.n_templates)
        superpose_to_file(templates, membership, path, args.chunk_samples)
        ours = time.perf_counter() - t0
        k = min(args.loop_samples, len(sets))
        t0 = time.perf_counter()
        ref = superpose_loop(templates, sets[::max(1, len(sets) // k)][:k])
        loop = (time.perf_counter() - t0) * len(sets) / k
        with h5py.File(path) as h5:
            np.testing.assert_array_equal(h5["x"][::max(1, len(sets) // k)][:k], ref)
    print(f"{len(sets)} superposed {n}x{n} samples from {args.n_templates} templates "
          f"(N_sub {lo}..{hi}), written to HDF5")
    print(f"sparse product, chunked writes: {ours:.2f} s")
    print(f"per-sample loop (timed on {k}, extrapolated, not written): {loop:.2f} s")
    print(f"ratio loop / ours: {loop / ours:.1f}x")


if __name__ == "__main__":
    main()

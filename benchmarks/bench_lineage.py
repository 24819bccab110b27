"""Particle-ID linking of two snapshots: sorted search vs per-galaxy Python set intersections.

The reference is what one writes first: for every galaxy at the earlier snapshot, intersect
its set of star IDs with the set of every galaxy at the later one. Both give the same links
(checked here); the ratio of their run times is printed.

    python benchmarks/bench_lineage.py [--n-galaxies 400] [--stars-per-galaxy 2000]
    python benchmarks/bench_lineage.py --n-galaxies 5000 --stars-per-galaxy 10000 --ours-only
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from simbridge.dataset.lineage import particle_id_links


def make_snapshots(n_gal: int, n_star: int, rng: np.random.Generator):
    """Late galaxies keep 90% of an early galaxy's stars; 10% of galaxies merge pairwise."""
    ids = rng.permutation(n_gal * n_star * 4)[: n_gal * n_star].astype(np.uint64)
    early_owner = np.repeat(np.arange(n_gal), n_star)
    target = np.arange(n_gal)
    merging = rng.choice(n_gal, n_gal // 10, replace=False)
    target[merging] = rng.integers(0, n_gal, len(merging))
    keep = rng.uniform(size=ids.size) < 0.9
    late_ids = ids[keep]
    late_owner = target[early_owner[keep]]
    return ids, early_owner, late_ids, late_owner


def reference(early_ids, early_owner, n_early, late_ids, late_owner, min_fraction):
    early = [set(early_ids[early_owner == i].tolist()) for i in range(n_early)]
    n_late = int(late_owner.max()) + 1
    late = [set(late_ids[late_owner == j].tolist()) for j in range(n_late)]
    out = set()
    for i, e in enumerate(early):
        for j, lt in enumerate(late):
            if len(e & lt) / len(e) >= min_fraction:
                out.add((i, j))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-galaxies", type=int, default=400)
    parser.add_argument("--stars-per-galaxy", type=int, default=2000)
    parser.add_argument("--ours-only", action="store_true",
                        help="skip the reference (for TNG100-sized inputs)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    e_ids, e_own, l_ids, l_own = make_snapshots(args.n_galaxies, args.stars_per_galaxy, rng)
    t0 = time.perf_counter()
    links = particle_id_links(e_ids, e_own, args.n_galaxies, l_ids, l_own, 0.1)
    t_ours = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    if args.ours_only:
        print(f"{args.n_galaxies} galaxies x {args.stars_per_galaxy} stars per snapshot: "
              f"{len(links)} links in {t_ours:.1f} s, peak memory {peak_gb:.1f} GB")
        return
    t0 = time.perf_counter()
    ref = reference(e_ids, e_own, args.n_galaxies, l_ids, l_own, 0.1)
    t_ref = time.perf_counter() - t0
    assert set(zip(links["early"], links["late"], strict=True)) == ref
    print(f"{args.n_galaxies} galaxies x {args.stars_per_galaxy} stars per snapshot, "
          f"{len(ref)} links (identical)")
    print(f"  sorted search {t_ours:8.3f} s | set intersections {t_ref:8.3f} s | "
          f"ratio {t_ref / t_ours:6.1f}x")


if __name__ == "__main__":
    main()

"""Benchmark: simbridge.extract.voxels.paint (numba kernel) and paint_numpy (np.bincount)
against Pylians' MAS_library.MA on the same float32 particles in the same process; the grids
must agree to float32 tolerance before any timing is printed.

Two particle sets: uniform random positions in random order (the cache's worst case) and a
displaced lattice in lattice (particle-ID) order, the order of an N-body snapshot. Each painter
gets one warm-up call (numba compilation or cache load, first-touch of memory) that is not
timed; the best of ``--repeats`` calls is reported, ours and Pylians' called alternately so
that both see the same load. The ratio uses our default float64 grid
(twice Pylians' float32 memory); the float32-grid time is printed beside it. Both painters run
on 1 thread (Pylians 0.12's MA has no threads option; our serial kernel); ``--threads T`` adds
a time for our threaded kernel (private grids), which is not part of the ratio.

Run: python benchmarks/bench_voxels.py [--n-side 128] [--grid 128] [--repeats 5] [--threads 2]

Pylians is not a SimBridge dependency (a ~4 minute Cython source build that pins Cython<3):
install it where you run this, ``pip install pylians==0.12 numba``, e.g. in a separate venv, and
run with ``PYTHONPATH=src`` (simbridge.extract.voxels needs only numpy and numba). Without it,
only our timings are printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simbridge.extract.voxels import paint, paint_numpy


def _best_interleaved(fa, fb, repeats: int) -> tuple[float, float]:
    """Best times of ``fa`` and ``fb`` called alternately (both see the same machine load),
    each after one untimed warm-up call."""
    fa()
    fb()
    best_a = best_b = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fa()
        t1 = time.perf_counter()
        fb()
        t2 = time.perf_counter()
        best_a, best_b = min(best_a, t1 - t0), min(best_b, t2 - t1)
    return best_a, best_b


def _best(fn, repeats: int) -> float:
    fn()  # warm-up, not timed
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _particles(kind: str, n_side: int, box: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":
        return rng.uniform(0, box, (n_side**3, 3)).astype(np.float32)
    q = (np.indices((n_side,) * 3).reshape(3, -1).T + 0.5) * (box / n_side)
    disp = rng.normal(0.0, 1.5 * box / n_side, q.shape)  # ~1.5 mean spacings
    return np.mod(q + disp, box).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-side", type=int, default=128, help="particles per side")
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--box", type=float, default=25.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="also time our threaded kernel with this many threads")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    try:
        import MAS_library as masl
    except ImportError:
        masl = None
    print(f"{args.n_side}^3 float32 particles -> {args.grid}^3 cells, box {args.box}; "
          f"1 thread each; one untimed warm-up call per painter; best of {args.repeats}")
    ratios = []
    for kind in ("random", "lattice-order"):
        pos = _particles(kind, args.n_side, args.box, rng)
        for mas in ("CIC", "NGP"):
            ours_grid = paint(pos, args.box, args.grid, mas=mas)
            t_ours = _best(lambda mas=mas, pos=pos: paint(pos, args.box, args.grid, mas=mas),
                           args.repeats)
            t_32 = _best(lambda mas=mas, pos=pos: paint(pos, args.box, args.grid, mas=mas,
                                                        dtype=np.float32), args.repeats)
            t_np = _best(lambda mas=mas, pos=pos: paint_numpy(pos, args.box, args.grid,
                                                              mas=mas), max(1, args.repeats // 2))
            rest = f"(numba, float32 grid) {t_32:.4f} s, (numpy) {t_np:.4f} s"
            if args.threads > 1:
                threaded = paint(pos, args.box, args.grid, mas=mas, threads=args.threads)
                if not np.allclose(threaded, ours_grid, rtol=0, atol=1e-9):
                    raise SystemExit(f"{mas}: threaded grid differs from the serial one")
                t_thr = _best(lambda mas=mas, pos=pos: paint(pos, args.box, args.grid, mas=mas,
                                                             threads=args.threads),
                              args.repeats)
                rest += f", (numba, {args.threads} threads) {t_thr:.4f} s"
            if masl is None:
                print(f"{kind:>13} {mas}: simbridge (numba, float64 grid) {t_ours:.4f} s, {rest}"
                      " (Pylians not installed: pip install pylians==0.12 for the ratio)")
                continue
            theirs = np.zeros((args.grid,) * 3, np.float32)
            masl.MA(pos, theirs, args.box, MAS=mas, verbose=False)
            diff = float(np.max(np.abs(ours_grid - theirs)))
            if diff > 1e-4 * max(1.0, float(theirs.max())):
                raise SystemExit(f"{mas}: grids differ by {diff}; no timing printed")

            def run_pylians(mas=mas, pos=pos):
                grid = np.zeros((args.grid,) * 3, np.float32)
                masl.MA(pos, grid, args.box, MAS=mas, verbose=False)

            t_ours, t_theirs = _best_interleaved(
                lambda mas=mas, pos=pos: paint(pos, args.box, args.grid, mas=mas), run_pylians,
                args.repeats)
            ratios.append(t_ours / t_theirs)
            print(f"{kind:>13} {mas}: simbridge (numba, float64 grid) {t_ours:.4f} s, {rest}"
                  f", Pylians (float32 grid) {t_theirs:.4f} s: ratio simbridge "
                  f"(float64 grid)/Pylians {t_ours / t_theirs:.2f} (max |difference| {diff:.2e})")
    if ratios:
        print(f"worst ratio simbridge/Pylians (1 thread each) {max(ratios):.2f} "
              f"({'faster' if max(ratios) < 1 else 'NOT faster'} in every case)")


if __name__ == "__main__":
    main()

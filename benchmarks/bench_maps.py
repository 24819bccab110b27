"""Benchmark: project_galaxy_maps against scipy.stats.binned_statistic_2d on the same six maps.

Run: python benchmarks/bench_maps.py [--n-particles 2000000] [--small-particles 3000]
       [--npix 128] [--repeats 5]

Both sides start from the same inputs (positions, velocities, rotation, per-particle arrays),
project, bin and turn the sums into the five condition maps and the ex-situ fraction. Two
references: one binned_statistic_2d call with statistic="sum" and a list of 8 value arrays (the
fastest way, the bin numbers are computed once), and one call per statistic, as a user might
write it. The maps must agree to float32 tolerance before any time is printed.

project_galaxy_maps runs numba kernels: its first call in a process compiles them, or loads them
from the on-disk cache (``__pycache__`` next to maps.py, or NUMBA_CACHE_DIR). That first call is
timed and reported on its own and is not part of the timings; set NUMBA_CACHE_DIR to an empty
folder to time a cold compile. A second, small galaxy (a few thousand particles, the common case
in the extraction) is timed too: there the per-pixel finalisation and the per-call overhead
dominate, not the particle loop.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numba
import numpy as np
from scipy.spatial.transform import Rotation
from scipy.stats import binned_statistic_2d

from simbridge.extract import maps
from simbridge.extract.maps import MAP_CHANNELS, project_galaxy_maps


def random_particles(n: int, seed: int) -> dict[str, np.ndarray]:
    """A blob galaxy: n star particles, most of them inside a 60 kpc field."""
    rng = np.random.default_rng(seed)
    return {
        "pos_kpc": rng.normal(0.0, 8.0, (n, 3)),
        "vel_kms": rng.normal(0.0, 150.0, (n, 3)) + np.array([40.0, -10.0, 25.0]),
        "mass_msun": rng.uniform(5e4, 2e6, n),
        "age_gyr": rng.uniform(0.1, 13.5, n),
        "metallicity": rng.uniform(1e-4, 0.04, n),
        "insitu": rng.choice(np.array([-1, 0, 1], dtype=np.int8), n, p=[0.05, 0.3, 0.65]),
    }


def maps_from_sums(sums: list[np.ndarray], v_shift: float, pixel_size: float) -> dict:
    """The six maps from per-pixel sums [m, m dv, m dv^2, m age, m Z, m ex, m known, count]."""
    m, m_dv, m_dv2, m_age, m_z, m_ex, m_known, count = sums

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    mean_dv = ratio(m_dv, m)
    return {
        "conditions": np.stack([
            m / pixel_size**2,
            np.where(m > 0, mean_dv + v_shift, 0.0),
            np.sqrt(np.maximum(ratio(m_dv2, m) - mean_dv**2, 0.0)),
            ratio(m_age, m),
            ratio(m_z, m),
        ]),
        "exsitu_fraction": ratio(m_ex, m_known),
        "particle_count": np.rint(count).astype(np.int64),
    }


def reference_inputs(p: dict, rotation: np.ndarray) -> tuple[np.ndarray, ...]:
    """What a binned_statistic_2d user computes first: image coordinates and weight arrays."""
    x, y = p["pos_kpc"] @ rotation[0], p["pos_kpc"] @ rotation[1]
    v = p["vel_kms"] @ rotation[2]
    m = p["mass_msun"]
    v_shift = float(np.dot(m, v) / m.sum())  # a stabilising shift, as in project_galaxy_maps
    dv = v - v_shift
    weights = [m, m * dv, m * dv * dv, m * p["age_gyr"], m * p["metallicity"],
               m * (p["insitu"] == 0), m * (p["insitu"] >= 0), np.ones_like(m)]
    return x, y, v_shift, weights


def reference_one_call(p: dict, rotation: np.ndarray, npix: int, half_width: float) -> dict:
    """binned_statistic_2d once, statistic='sum' over a list of value arrays."""
    x, y, v_shift, weights = reference_inputs(p, rotation)
    edges = np.linspace(-half_width, half_width, npix + 1)
    # (y, x) order: the statistic is indexed [iy, ix] like project_galaxy_maps
    sums = binned_statistic_2d(y, x, weights, "sum", bins=[edges, edges]).statistic
    return maps_from_sums(list(sums), v_shift, 2 * half_width / npix)


def reference_per_statistic(p: dict, rotation: np.ndarray, npix: int, half_width: float) -> dict:
    """binned_statistic_2d once per needed sum (and 'count'), as a user might write it."""
    x, y, v_shift, weights = reference_inputs(p, rotation)
    edges = np.linspace(-half_width, half_width, npix + 1)
    sums = [binned_statistic_2d(y, x, w, "sum", bins=[edges, edges]).statistic
            for w in weights[:-1]]
    sums.append(binned_statistic_2d(y, x, None, "count", bins=[edges, edges]).statistic)
    return maps_from_sums(sums, v_shift, 2 * half_width / npix)


def best_time(fn: Callable[[], object], repeats: int, calls: int = 1) -> float:
    """Best over ``repeats`` runs of the mean wall time of ``calls`` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def first_call(fn: Callable[[], object]) -> tuple[object, float, str]:
    """The result and wall time of the first call, and whether the kernels compiled."""
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    kernels = (maps._accumulate, maps._finalise)
    misses = sum(sum(k.stats.cache_misses.values()) for k in kernels)
    hits = sum(sum(k.stats.cache_hits.values()) for k in kernels)
    how = (f"compiled {misses} kernel signature(s)" if misses else
           f"loaded {hits} kernel signature(s) from the cache" if hits else "kernels ready")
    return result, elapsed, how


def check_agreement(ours, ref: dict) -> None:
    """Assert the two sets of maps agree to float32 precision (relative to each map's scale)."""
    np.testing.assert_array_equal(ours.particle_count, ref["particle_count"])
    for k, name in enumerate(MAP_CHANNELS):
        scale = np.abs(ref["conditions"][k]).max()
        np.testing.assert_allclose(ours.conditions[k], ref["conditions"][k], rtol=1e-5,
                                   atol=1e-6 * scale, err_msg=name)
    np.testing.assert_allclose(ours.exsitu_fraction, ref["exsitu_fraction"], rtol=1e-5, atol=1e-6)


def time_case(n: int, args: argparse.Namespace, calls: int) -> dict:
    """Check the maps of an n-particle galaxy against both references, then time all three."""
    particles = random_particles(n, args.seed)
    rotation = Rotation.random(None, np.random.default_rng(args.seed)).as_matrix()
    grid = (args.npix, args.half_width_kpc)

    def ours():
        return project_galaxy_maps(**particles, rotation=rotation, npix=args.npix,
                                   half_width_kpc=args.half_width_kpc)

    result, t_first, how = first_call(ours)  # warm-up: numba compiles or loads the kernels
    check_agreement(result, reference_one_call(particles, rotation, *grid))
    check_agreement(result, reference_per_statistic(particles, rotation, *grid))
    return {
        "n": n, "inside": int(result.particle_count.sum()),
        "filled": int((result.particle_count > 0).sum()), "first": t_first, "how": how,
        "ours": best_time(ours, args.repeats, calls),
        "one": best_time(lambda: reference_one_call(particles, rotation, *grid), args.repeats,
                         calls),
        "per": best_time(lambda: reference_per_statistic(particles, rotation, *grid),
                         max(1, args.repeats // 2), calls),
    }


def report(case: dict, args: argparse.Namespace, calls: int) -> None:
    n = case["n"]
    mean_of = f" (mean of {calls} calls)" if calls > 1 else ""
    print(f"{n:,} particles ({case['inside']:,} inside the field, {case['filled']:,} filled "
          f"pixels), {args.npix}x{args.npix} pixels, 5 condition maps + ex-situ fraction, "
          f"best of {args.repeats}{mean_of}; maps agree")
    for label, t in (("project_galaxy_maps", case["ours"]),
                     ("binned_statistic_2d, one call, 8 value arrays", case["one"]),
                     ("binned_statistic_2d, one call per statistic", case["per"])):
        print(f"  {label:46s} {t * 1e3:9.3f} ms  {n / t / 1e6:7.1f} M particles/s")
    print(f"speed-up of project_galaxy_maps: {case['one'] / case['ours']:.1f}x vs the fastest "
          f"binned_statistic_2d reference (one call), {case['per'] / case['ours']:.1f}x vs one "
          f"call per statistic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-particles", type=int, default=2_000_000)
    parser.add_argument("--small-particles", type=int, default=3_000,
                        help="particles of the small-galaxy case (0: skip it)")
    parser.add_argument("--npix", type=int, default=128)
    parser.add_argument("--half-width-kpc", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()

    big = time_case(args.n_particles, args, calls=1)
    print(f"numba {numba.__version__}, numpy {np.__version__}; first call of "
          f"project_galaxy_maps {big['first']:.2f} s ({big['how']}), not timed below")
    report(big, args, calls=1)
    if args.small_particles > 0:
        calls = max(1, 200_000 // args.small_particles)
        print()
        report(time_case(args.small_particles, args, calls), args, calls)


if __name__ == "__main__":
    main()

"""End-to-end extraction (reading included): batched loadSubset reads vs a loadSubhalo loop.

Builds the default demo universe in a temporary directory, then reads and maps every galaxy of
snapshot 99 twice: with SimBridge's batch path (one contiguous ``il.snapshot.loadSubset`` per
read range, :func:`map_batch`) and with a plain loop of ``il.snapshot.loadSubhalo`` calls plus a
per-galaxy StellarAssembly read, as an analysis script would do it. Both feed the same map maker;
reading alone is timed too. Writing the output file is left out of both. Checks that the maps
agree and prints the times and ratios. ``--n-chunks`` sets how many files the snapshot is split
into (TNG100-1 has 448 per snapshot).

    python benchmarks/bench_extraction.py [--n-galaxies 120] [--n-chunks 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
import yaml

from simbridge.config import validate_config
from simbridge.extract.tng_maps import (
    galaxy_maps_from_particles,
    galaxy_rotations,
    iter_batch_particles,
    map_batch,
    write_galaxy_catalog,
)
from simbridge.sims import tng
from simbridge.sims.tng_demo import generate_demo_universe

ROOT = Path(__file__).resolve().parents[1]


def reference_read(base: Path, snapshot: int, subhalo_id: int) -> tuple[dict, np.ndarray]:
    """One galaxy as an analysis script reads it: loadSubhalo plus its StellarAssembly slice."""
    stars = il.snapshot.loadSubhalo(str(base), snapshot, subhalo_id, "stars",
                                    fields=list(tng.STAR_FIELDS))
    offsets = il.snapshot.getSnapOffsets(str(base), snapshot, subhalo_id, "Subhalo")
    off, n = int(offsets["offsetType"][4]), int(offsets["lenType"][4])
    with h5py.File(tng.stellar_assembly_path(base, snapshot), "r") as fh:
        insitu = fh["InSitu"][off:off + n]
    return stars, insitu

N_VIEWS = 3  # lines of sight per galaxy


def reference_loop(base: Path, snapshot: int, catalog, config: dict) -> dict[int, np.ndarray]:
    """Read and map galaxy after galaxy."""
    header = tng.read_snapshot_header(base, snapshot)
    maps = {}
    for row in catalog.itertuples():
        stars, insitu = reference_read(base, snapshot, int(row.subhalo_id))
        res = galaxy_maps_from_particles(
            stars, insitu, header,
            np.array([row.pos_x_ckpc_h, row.pos_y_ckpc_h, row.pos_z_ckpc_h]),
            np.array([row.vel_x_kms, row.vel_y_kms, row.vel_z_kms]),
            float(row.half_mass_radius_kpc),
            galaxy_rotations(config["seed"], snapshot, int(row.subhalo_id), N_VIEWS),
            config["maps"],
        )
        maps[int(row.subhalo_id)] = res.conditions
    return maps


def best_of(repeats: int, func) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls, and the last result."""
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-galaxies", type=int, default=None)
    parser.add_argument("--n-chunks", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    if args.n_galaxies:
        config["demo_universe"]["n_galaxies"] = args.n_galaxies
    config["demo_universe"]["n_snapshot_chunks"] = args.n_chunks
    config["tng"]["n_batches"] = 1
    snapshot = config["tng"]["snapshots"][0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = tmp / "TNG-demo"
        generate_demo_universe(sim, config["demo_universe"], config["seed"])
        base = sim / "output"
        catalog = write_galaxy_catalog(base, snapshot, config["tng"], tmp / "catalog.csv")
        galaxies = catalog[catalog["batch"] == 0].reset_index(drop=True)
        galaxies["n_views"] = N_VIEWS
        n_stars = int(galaxies["n_part4"].sum())
        header = tng.read_snapshot_header(base, snapshot)
        gap = config["tng"]["max_read_gap_particles"]

        t_read_ours, _ = best_of(args.repeats, lambda: list(
            iter_batch_particles(base, header, galaxies, gap)))
        t_read_ref, _ = best_of(args.repeats, lambda: [
            reference_read(base, snapshot, int(s)) for s in galaxies["subhalo_id"]])
        t_ours, (results, _) = best_of(args.repeats, lambda: map_batch(
            base, header, galaxies, config, progress=False))
        t_ref, ref = best_of(args.repeats, lambda: reference_loop(base, snapshot, galaxies,
                                                                  config))
        for i, res in results.items():
            np.testing.assert_allclose(res.conditions, ref[int(galaxies["subhalo_id"][i])],
                                       rtol=1e-6, atol=1e-6)

    print(f"{len(galaxies)} galaxies, {n_stars:,} star particles in {args.n_chunks} snapshot "
          f"chunks, {N_VIEWS} views of {config['maps']['npix']}^2 pixels; "
          f"best of {args.repeats}; maps agree")
    print(f"  reading only: batched loadSubset {t_read_ours:7.3f} s | loadSubhalo loop "
          f"{t_read_ref:7.3f} s | ratio {t_read_ref / t_read_ours:5.1f}x")
    print(f"  read + map:   batched loadSubset {t_ours:7.3f} s | loadSubhalo loop "
          f"{t_ref:7.3f} s | ratio {t_ref / t_ours:5.1f}x")
    print(f"speed-up of batched extraction over the loadSubhalo loop: {t_ref / t_ours:.2f}x "
          f"end to end, {t_read_ref / t_read_ours:.1f}x on reading")


if __name__ == "__main__":
    main()

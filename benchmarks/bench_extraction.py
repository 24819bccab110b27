"""End-to-end extraction (reading included): batched loadSubset reads vs a loadSubhalo loop.

Builds the default demo universe in a temporary directory, then maps every galaxy of snapshot
99 twice: with SimBridge's batch path (one contiguous ``il.snapshot.loadSubset`` per read
range) and with a plain loop of ``il.snapshot.loadSubhalo`` calls plus a per-galaxy
StellarAssembly read, as an analysis script would do it. Both feed the same map maker, so the
ratio measures the reading strategy. Checks that the maps agree, prints both times and the ratio.

    python benchmarks/bench_extraction.py [--n-galaxies 120]
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
    extract_batch,
    galaxy_maps_from_particles,
    galaxy_rotations,
    write_galaxy_catalog,
)
from simbridge.sims import tng
from simbridge.sims.tng_demo import generate_demo_universe

ROOT = Path(__file__).resolve().parents[1]


def reference_loop(base: Path, snapshot: int, catalog, config: dict) -> dict[int, np.ndarray]:
    """One loadSubhalo call and one StellarAssembly read per galaxy."""
    header = tng.read_snapshot_header(base, snapshot)
    sa_path = tng.stellar_assembly_path(base, snapshot)
    maps = {}
    for row in catalog.itertuples():
        stars = il.snapshot.loadSubhalo(str(base), snapshot, int(row.subhalo_id), "stars",
                                        fields=list(tng.STAR_FIELDS))
        offsets = il.snapshot.getSnapOffsets(str(base), snapshot, int(row.subhalo_id), "Subhalo")
        off, n = int(offsets["offsetType"][4]), int(offsets["lenType"][4])
        with h5py.File(sa_path, "r") as fh:
            insitu = fh["InSitu"][off:off + n]
        res = galaxy_maps_from_particles(
            stars, insitu, header,
            np.array([row.pos_x_ckpc_h, row.pos_y_ckpc_h, row.pos_z_ckpc_h]),
            np.array([row.vel_x_kms, row.vel_y_kms, row.vel_z_kms]),
            float(row.half_mass_radius_kpc),
            galaxy_rotations(config["seed"], snapshot, int(row.subhalo_id),
                             config["maps"]["n_views"]),
            config["maps"],
        )
        maps[int(row.subhalo_id)] = res.conditions
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-galaxies", type=int, default=None)
    args = parser.parse_args()
    config = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    if args.n_galaxies:
        config["demo_universe"]["n_galaxies"] = args.n_galaxies
    config["tng"]["n_batches"] = 1
    snapshot = config["tng"]["snapshots"][0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = tmp / "TNG-demo"
        generate_demo_universe(sim, config["demo_universe"], config["seed"])
        base = sim / "output"
        catalog = write_galaxy_catalog(base, snapshot, config["tng"], tmp / "catalog.csv")
        selected = catalog[catalog["status"] == "selected"]
        n_stars = int(selected["n_part4"].sum())

        t0 = time.perf_counter()
        extract_batch(base, snapshot, tmp / "catalog.csv", 0, config, tmp / "maps.h5",
                      tmp / "galaxies.csv", progress=False)
        t_ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        ref = reference_loop(base, snapshot, selected, config)
        t_ref = time.perf_counter() - t0

        with h5py.File(tmp / "maps.h5") as h5:
            ids = h5["subhalo_id"][...]
            cond = h5["conditions"][...]
        for sid, maps in ref.items():
            np.testing.assert_allclose(cond[ids == sid], maps, rtol=1e-6, atol=1e-6)

    print(f"galaxies: {len(selected)}, star particles: {n_stars:,}, "
          f"views per galaxy: {config['maps']['n_views']}, {config['maps']['npix']}^2 pixels")
    print(f"batched loadSubset extraction: {t_ours:8.3f} s")
    print(f"loop of il.snapshot.loadSubhalo: {t_ref:8.3f} s")
    print(f"speed-up of batched extraction over the loadSubhalo loop: {t_ref / t_ours:.1f}x")


if __name__ == "__main__":
    main()

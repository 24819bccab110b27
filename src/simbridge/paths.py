"""Every path of the workflow's outputs, defined once (rules and package share these)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Demo universe: the simulation tree and the summary written when it is complete.
DEMO_SIM_DIR = "results/demo_universe/{simulation}"
DEMO_SUMMARY = "results/demo_universe/{simulation}.summary.json"

#: TNG map extraction, per snapshot and batch.
TNG_CATALOG = "results/tng/{simulation}/catalog/snap_{snapshot}.csv"
TNG_MAPS_BATCH = "results/tng/{simulation}/maps/batches/snap_{snapshot}/batch_{batch}.h5"
TNG_MAPS_BATCH_GALAXIES = "results/tng/{simulation}/maps/batches/snap_{snapshot}/batch_{batch}.csv"
TNG_MAPS = "results/tng/{simulation}/maps/tng_maps.h5"
TNG_MANIFEST = "results/tng/{simulation}/maps/galaxy_manifest.csv"
TNG_EXAMPLE_FIGURE = "results/tng/{simulation}/figures/example_maps.png"
TNG_GLOBAL_FIGURE = "results/tng/{simulation}/figures/exsitu_fraction_vs_mass.png"

LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"


def snapshot_tag(snapshot: int) -> str:
    """Three-digit snapshot label as in the archive's file names (99 -> '099')."""
    return f"{int(snapshot):03d}"


def batch_tag(batch: int) -> str:
    """Four-digit batch label."""
    return f"{int(batch):04d}"


def tng_base_path(config: dict[str, Any]) -> Path:
    """illustris_python basePath: the configured archive, or the demo universe's output/."""
    base = config["tng"]["base_path"]
    if base is not None:
        return Path(base)
    return Path(DEMO_SIM_DIR.format(simulation=config["tng"]["simulation_name"])) / "output"

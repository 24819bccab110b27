"""Path helpers and input functions shared by the rules (paths come from simbridge.paths)."""

from simbridge import paths

SIMULATION = config["tng"]["simulation_name"]
SNAPSHOTS = [paths.snapshot_tag(s) for s in config["tng"]["snapshots"]]
BATCHES = [paths.batch_tag(b) for b in range(config["tng"]["n_batches"])]
USE_DEMO_UNIVERSE = config["tng"]["base_path"] is None


wildcard_constraints:
    snapshot=r"\d{3}",
    batch=r"\d{4}",


def sim_path(template: str) -> str:
    """A path template of simbridge.paths with the simulation filled in, other wildcards kept."""
    return template.replace("{simulation}", SIMULATION)


def log_path(name: str) -> str:
    """Log file of a job."""
    return f"{paths.LOGS}/{name}.log"


def benchmark_path(name: str) -> str:
    """Snakemake benchmark file of a job (run time and memory)."""
    return f"{paths.BENCHMARKS}/{name}.tsv"


def tng_base_path() -> str:
    """illustris_python basePath: the configured archive or the demo universe's output/."""
    return str(paths.tng_base_path(config))


def tng_archive_input(wildcards) -> list[str]:
    """The demo universe's summary when it is the input; nothing for a real archive."""
    return [sim_path(paths.DEMO_SUMMARY)] if USE_DEMO_UNIVERSE else []


def extraction_config() -> dict:
    """The settings that determine the maps (a change to any of them reruns extraction)."""
    maps = {k: v for k, v in config["maps"].items() if k != "n_example_galaxies"}
    return {"seed": config["seed"], "tng": config["tng"], "maps": maps}


def tng_maps_outputs() -> list[str]:
    """Merged maps file and galaxy manifest."""
    return [sim_path(paths.TNG_MAPS), sim_path(paths.TNG_MANIFEST)]


def tng_report_figures() -> list[str]:
    """Figures of the TNG maps stage."""
    return [sim_path(paths.TNG_EXAMPLE_FIGURE), sim_path(paths.TNG_GLOBAL_FIGURE)]

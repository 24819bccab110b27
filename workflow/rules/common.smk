"""Path helpers and input functions shared by the rules (paths come from simbridge.paths)."""

import functools

from simbridge import paths
from simbridge.models.naming import model_name

SIMULATION = config["tng"]["simulation_name"]
SNAPSHOTS = [paths.snapshot_tag(s) for s in config["tng"]["snapshots"]]
BATCHES = [paths.batch_tag(b) for b in range(config["tng"]["n_batches"])]
USE_DEMO_UNIVERSE = config["tng"]["base_path"] is None


wildcard_constraints:
    snapshot=r"\d{3}",
    batch=r"\d{4}",
    split="|".join(paths.SPLITS),
    model=r"z\d+_beta[0-9.e+-]+",


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
    """The demo universe's summary when it is the input; nothing for a real archive (whose
    files enter through the archive_fingerprint params below)."""
    return [sim_path(paths.DEMO_SUMMARY)] if USE_DEMO_UNIVERSE else []


@functools.cache
def _snapshot_fingerprint(snapshot: str) -> str:
    from simbridge.sims.tng import files_fingerprint, snapshot_archive_files

    return files_fingerprint(snapshot_archive_files(paths.tng_base_path(config), int(snapshot)))


def archive_fingerprint(wildcards) -> str:
    """Names, sizes and mtimes of one snapshot's archive files, hashed (one stat per file).

    A param of the jobs that read the archive: a replaced or repaired file changes it, so those
    jobs and what follows rerun, even when the new file carries an older mtime. The demo
    universe is tracked through its summary file instead (an input).
    """
    return "demo universe" if USE_DEMO_UNIVERSE else _snapshot_fingerprint(wildcards.snapshot)


@functools.cache
def trees_fingerprint() -> str:
    """The archive fingerprint of the SubLink merger trees (link_snapshots reads them)."""
    if USE_DEMO_UNIVERSE:
        return "demo universe"
    from simbridge.sims.tng import files_fingerprint

    trees = paths.tng_base_path(config).parent / "postprocessing" / "trees"
    return files_fingerprint(sorted(trees.glob("*/*.hdf5")) if trees.is_dir() else [])


# Params are what a rule's outputs depend on: a change reruns the rule and what follows. Reading
# settings (tng.max_read_gap_particles) change no output, so scripts take them from the config.


def selection_config() -> dict:
    """The settings that determine the galaxy catalogs."""
    return {k: config["tng"][k] for k in ("stellar_mass_min_msun", "n_batches")}


def measure_config() -> dict:
    """The settings that determine the global properties (a change reruns the measurement)."""
    return {"maps": {"min_star_particles": config["maps"]["min_star_particles"]}}


def extraction_config() -> dict:
    """The settings that determine the maps (a change to any of them reruns extraction)."""
    maps = {k: v for k, v in config["maps"].items() if k != "n_example_galaxies"}
    return {
        "seed": config["seed"],
        "tng": {"simulation_name": config["tng"]["simulation_name"]},
        "maps": maps,
    }


def lineage_config() -> dict:
    """The split settings that determine lineage (not the fractions: they only split groups)."""
    return {k: v for k, v in config["splits"].items() if k != "fractions"}


def dataset_config() -> dict:
    """The settings recorded in the split files (maps, balancing and splits)."""
    settings = extraction_config()
    settings["tng"]["snapshots"] = config["tng"]["snapshots"]
    return {**settings, "balancing": config["balancing"], "splits": config["splits"]}


def split_file(split: str) -> str:
    """The dataset file of one split."""
    return sim_path(paths.TNG_DATASET_SPLIT).replace("{split}", split)


def per_batch(template: str) -> list[str]:
    """A per-(snapshot, batch) path template expanded over every snapshot and batch."""
    return expand(sim_path(template), snapshot=SNAPSHOTS, batch=BATCHES)


def extraction_outputs() -> list[str]:
    """Every batch of maps (the extraction stage)."""
    return per_batch(paths.TNG_MAPS_BATCH) + per_batch(paths.TNG_MAPS_BATCH_GALAXIES)


def dataset_outputs() -> list[str]:
    """Split files, galaxy manifest and the leakage check (the dataset stage)."""
    return [
        *expand(sim_path(paths.TNG_DATASET_SPLIT), split=paths.SPLITS),
        sim_path(paths.TNG_DATASET_MANIFEST),
        sim_path(paths.TNG_LEAKAGE_CHECK),
    ]


def tng_report_figures() -> list[str]:
    """Figures of the TNG dataset stage."""
    return [
        sim_path(paths.TNG_EXAMPLE_FIGURE),
        sim_path(paths.TNG_GLOBAL_FIGURE),
        sim_path(paths.TNG_BALANCING_FIGURE),
    ]


# The ex-situ posterior model: one model per (latent size, beta) pair of the sweep.
EXSITU = config["exsitu_model"]
EXSITU_MODELS = {
    model_name(latent, beta): (latent, beta)
    for latent in EXSITU["latent_dims"]
    for beta in EXSITU["betas"]
}


def exsitu_cvae_config(wildcards) -> dict:
    """What a trained cVAE depends on: seed, its latent size and beta, architecture, optimizer.

    The device and loader workers change how fast it trains, not the model, so scripts take
    them from the config (a change to them retrains nothing); flow settings retrain only flows.
    """
    latent, beta = EXSITU_MODELS[wildcards.model]
    keep = ("channels", "summary_dim", "augment", "cvae")
    return {
        "seed": config["seed"],
        "latent_dim": latent,
        "beta": beta,
        **{k: EXSITU[k] for k in keep},
    }


def exsitu_flow_config(wildcards) -> dict:
    """What a trained flow depends on (beyond its cVAE, an input): seed and flow settings."""
    return {"seed": config["seed"], "flow": EXSITU["flow"]}


def exsitu_evaluation_config() -> dict:
    """What the evaluation of a model depends on."""
    keep = ("n_draws", "credible_levels", "coverage_tolerance", "calibration_tolerance")
    return {"seed": config["seed"], **{k: EXSITU["evaluation"][k] for k in keep}}


def per_model(template: str) -> list[str]:
    """A per-model path template expanded over the models of the sweep."""
    return expand(sim_path(template), model=list(EXSITU_MODELS))


def exsitu_model_outputs() -> list[str]:
    """Trained models, evaluations, every figure of the model stage and the sweep comparison."""
    per = [
        paths.EXSITU_CVAE,
        paths.EXSITU_FLOW,
        paths.EXSITU_METRICS,
        paths.EXSITU_CVAE_CURVES,
        paths.EXSITU_FLOW_CURVES,
        paths.EXSITU_RESIDUALS_FIGURE,
        paths.EXSITU_RESIDUAL_VS_TRUTH_FIGURE,
        paths.EXSITU_COVERAGE_FIGURE,
        paths.EXSITU_CALIBRATION_FIGURE,
        paths.EXSITU_EXAMPLES_FIGURE,
    ]
    return [f for t in per for f in per_model(t)] + [
        sim_path(paths.EXSITU_SWEEP_TABLE),
        sim_path(paths.EXSITU_SWEEP_FIGURE),
    ]


# Inference on new galaxies (exsitu_model.inference): one job per listed input file, with the
# model of the sweep that exsitu_model.inference.model names (null: the first).
from simbridge.errors import SimBridgeConfigError
from simbridge.models.naming import inference_inputs, inference_model, inference_settings

EXSITU_INFERENCE_INPUTS = inference_inputs(config)
EXSITU_INFERENCE_MODEL = inference_model(config)


def exsitu_inference_input(wildcards) -> str:
    """The input file of one inference job (by its name)."""
    return EXSITU_INFERENCE_INPUTS[wildcards.name]


def no_inference_inputs(wildcards) -> list[str]:
    """The `infer` target without input files: say which key to set."""
    raise SimBridgeConfigError(
        "exsitu_model.inference.input_files is empty: list the HDF5 files of condition maps to "
        "infer (layout: README.md, 'Applying a trained model to new galaxies')"
    )


def exsitu_inference_outputs() -> list[str]:
    """Posterior files, summaries and figures of every listed input file (none by default)."""
    templates = (
        paths.EXSITU_INFERENCE_POSTERIOR,
        paths.EXSITU_INFERENCE_SUMMARY,
        paths.EXSITU_INFERENCE_FIGURES,
    )
    return [
        expand(sim_path(t), model=EXSITU_INFERENCE_MODEL, name=name)[0]
        for name in EXSITU_INFERENCE_INPUTS
        for t in templates
    ]

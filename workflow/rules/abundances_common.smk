"""Config, path helpers and input functions of the abundances branch (rules in
abundances.smk; paths from simbridge.paths)."""

from pathlib import Path

NIHAO = config["nihao"]
ABUNDANCES = config["abundances"]
USE_NIHAO_DEMO = NIHAO["base_path"] is None
NIHAO_BATCHES = [paths.batch_tag(b) for b in range(NIHAO["n_batches"])]


wildcard_constraints:
    worker=r"\d+",


def nihao_base_path() -> str:
    """The NIHAO copy (``~`` expanded) or the demo suite."""
    if USE_NIHAO_DEMO:
        return paths.NIHAO_DEMO_DIR
    return str(Path(NIHAO["base_path"]).expanduser())


def nihao_input(wildcards) -> list[str]:
    """The demo suite's summary when it is the input; nothing for a real NIHAO copy."""
    return [paths.NIHAO_DEMO_SUMMARY] if USE_NIHAO_DEMO else []


def abundance_extraction_config() -> dict:
    """What the building blocks depend on (a change reruns the extraction)."""
    keep = ("zero_mass_fraction", "zero_floor_mass_fraction", "stellar_mass_max_msun",
            "percentile_range", "n_bins", "weighting")
    return {
        "seed": config["seed"],
        "nihao": {k: NIHAO[k] for k in ("base_path", "galaxies", "halo_number", "n_batches")},
        "abundances": {k: ABUNDANCES[k] for k in keep},
    }


def abundance_split(split: str) -> str:
    """The superposition file of one split."""
    return paths.ABUNDANCE_SPLIT.replace("{split}", split)


def abundance_dataset_outputs() -> list[str]:
    """Building blocks, error table, split files and the disjointness check."""
    return [
        paths.ABUNDANCE_HISTOGRAMS,
        paths.ABUNDANCE_BLOCKS,
        paths.ABUNDANCE_ERRORS,
        *[abundance_split(s) for s in paths.SPLITS],
        paths.ABUNDANCE_DISJOINTNESS,
        paths.ABUNDANCE_PLANES_FIGURE,
    ]


INFERENCE = ABUNDANCES["inference"]
TUNING_WORKERS = [str(w) for w in range(INFERENCE["tuning"]["n_workers"])]
BLOCK_MEMBERS = [f"block_npe_{k}" for k in range(INFERENCE["ensemble_size"])]
ABUNDANCE_FIGURES = ("posterior_vs_truth", "calibration", "nsub", "tuning")


def abundance_model(estimator: str) -> str:
    """The trained estimator file (nsub_npe, nsub_mnpe, nsub_classifier, block_npe_<k>)."""
    return paths.ABUNDANCE_MODEL.replace("{estimator}", estimator)


def abundance_figure(figure: str) -> str:
    """A report figure of the evaluation."""
    return paths.ABUNDANCE_FIGURE.replace("{figure}", figure)


def abundance_training_config() -> dict:
    """What the trained estimators depend on (the split files are inputs)."""
    return {"seed": config["seed"], "abundances": ABUNDANCES}


def abundance_model_outputs() -> list[str]:
    """Tuning record, every estimator, metrics and the report figures."""
    return [
        paths.ABUNDANCE_BEST_SETTINGS,
        *[abundance_model(e) for e in ("nsub_npe", "nsub_mnpe", "nsub_classifier")],
        *[abundance_model(m) for m in BLOCK_MEMBERS],
        paths.ABUNDANCE_METRICS,
        *[abundance_figure(f) for f in ABUNDANCE_FIGURES],
    ]


ABUNDANCE_SPLIT_INPUTS = {
    **{split: abundance_split(split) for split in paths.SPLITS},
    "check": paths.ABUNDANCE_DISJOINTNESS,
}

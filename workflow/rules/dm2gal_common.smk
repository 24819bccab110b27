"""Config, path helpers and input functions of the dm2gal branch (rules in dm2gal.smk; paths
from simbridge.paths)."""

from pathlib import Path

CAMELS = config["camels"]
DM2GAL = config["dm2gal"]
USE_CAMELS_DEMO = CAMELS["base_path"] is None
DM2GAL_PHASE_ARCHS = [f"classifier_{a}" for a in DM2GAL["classifiers"]] + ["regressor_r2unet"]
DM2GAL_FIGURES = ("training_curves", "precision_recall", "power_spectra", "slices")


wildcard_constraints:
    run=r"[A-Za-z0-9]+_[A-Za-z0-9_]+",
    phase="classifier|regressor",
    arch="r2unet|inception",


def camels_base_path() -> str:
    """The CAMELS copy (``~`` expanded) or the demo suite."""
    if USE_CAMELS_DEMO:
        return paths.CAMELS_DEMO_DIR
    return str(Path(CAMELS["base_path"]).expanduser())


def camels_runs() -> list[str]:
    """Configured runs; else the demo's LH_0..; else every run of a real copy (a directory
    listing at parse time, no file reads)."""
    if CAMELS["runs"]:
        return list(CAMELS["runs"])
    if USE_CAMELS_DEMO:
        return [f"LH_{i}" for i in range(CAMELS["demo"]["n_runs"])]
    from simbridge.sims.camels import list_runs

    return list_runs(camels_base_path(), CAMELS["suite"], CAMELS["set"], CAMELS["box"])


def camels_input(wildcards) -> list[str]:
    """The demo suite's summary when it is the input; nothing for a real CAMELS copy."""
    return [paths.CAMELS_DEMO_SUMMARY] if USE_CAMELS_DEMO else []


def dm2gal_grid(run: str) -> str:
    """The voxel-grid file of one run."""
    return paths.DM2GAL_GRID.replace("{run}", run)


def dm2gal_model(phase_arch: str) -> str:
    """A trained network ('classifier_r2unet', 'regressor_r2unet', ...)."""
    phase, arch = phase_arch.split("_", 1)
    return paths.DM2GAL_MODEL.replace("{phase}", phase).replace("{arch}", arch)


def dm2gal_history(phase_arch: str) -> str:
    """The training history of a network."""
    phase, arch = phase_arch.split("_", 1)
    return paths.DM2GAL_HISTORY.replace("{phase}", phase).replace("{arch}", arch)


def dm2gal_figure(figure: str) -> str:
    """A report figure of the branch."""
    return paths.DM2GAL_FIGURE.replace("{figure}", figure)


def dm2gal_settings() -> dict:
    """What the grids, models and evaluation depend on."""
    return {"seed": config["seed"], "camels": CAMELS, "dm2gal": DM2GAL}


DM2GAL_GRIDS = [dm2gal_grid(r) for r in camels_runs()]


def dm2gal_outputs() -> list[str]:
    """Everything `all` builds for the branch."""
    return [
        *DM2GAL_GRIDS,
        paths.DM2GAL_SPLITS,
        paths.DM2GAL_SPLIT_CHECK,
        paths.DM2GAL_HOD,
        *[dm2gal_model(m) for m in DM2GAL_PHASE_ARCHS],
        paths.DM2GAL_METRICS,
        *[dm2gal_figure(f) for f in DM2GAL_FIGURES],
    ]

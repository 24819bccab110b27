"""Input functions and path helpers of the generalization branch (rules: generalization.smk)."""

import os

from simbridge.errors import SimBridgeConfigError
from simbridge.dataset.domains import (
    check_generalization_config,
    demo_universe_params,
    training_domains,
)

GEN = config["generalization"]
# A config without generalization.domains (e.g. one for the TNG branch only) plans nothing here.
GEN_CONFIGURED = bool(GEN.get("domains"))
if GEN_CONFIGURED:
    check_generalization_config(GEN)
elif "generalization" in config["branches"]:
    raise SimBridgeConfigError(
        "branches lists generalization but generalization.domains is not set: add the "
        "domains (see config.yaml) or drop generalization from branches"
    )
GEN_UNIVERSES = {u["name"]: u for u in GEN["universes"]}
GEN_DEMO_UNIVERSES = [n for n, u in GEN_UNIVERSES.items() if u["base_path"] is None]
GEN_DOMAINS = {d["name"]: d for d in GEN.get("domains", [])}
GEN_TRAINING = training_domains(GEN) if GEN_CONFIGURED else []
GEN_OBSERVED = GEN["observed_spectra_dir"] is not None
GEN_MODEL_KINDS = list(GEN["models"])
GEN_MODEL_PATHS = {"random_forest": paths.GEN_RF_MODEL, "cnn": paths.GEN_CNN_MODEL}


wildcard_constraints:
    universe="|".join(GEN_UNIVERSES) or "(?!)",
    domain="|".join(GEN_DOMAINS) or "(?!)",
    kind="random_forest|cnn",


def gen_base_path(universe: str) -> str:
    """illustris_python basePath of a universe: its archive or its demo universe's output/."""
    base = GEN_UNIVERSES[universe]["base_path"]
    if base is not None:
        return base
    return os.path.join(paths.GEN_UNIVERSE_DIR.format(universe=universe), "output")


def gen_universe_input(wildcards) -> list[str]:
    """The demo universe's summary when the universe is a demo one; nothing for an archive."""
    u = wildcards.universe
    return [paths.GEN_UNIVERSE_SUMMARY.format(universe=u)] if u in GEN_DEMO_UNIVERSES else []


def gen_catalog_settings() -> dict:
    """What the galaxy catalog and its roles depend on."""
    return {
        "stellar_mass_min_msun": GEN["stellar_mass_min_msun"],
        "feature_selection_per_domain": GEN["feature_selection"]["n_per_domain"],
        "train_fraction": GEN["train_fraction"],
    }


def gen_spectra(names) -> dict[str, str]:
    """Spectra files of the named domains, keyed by domain."""
    return {n: paths.GEN_SPECTRA.format(domain=n) for n in names}


def generalization_spectra_outputs() -> list[str]:
    """Spectra and manifests of every domain."""
    return [paths.GEN_SPECTRA.format(domain=d) for d in GEN_DOMAINS] + [
        paths.GEN_SPECTRA_MANIFEST.format(domain=d) for d in GEN_DOMAINS
    ]


def generalization_errors() -> list[str]:
    """Errors of every model (kind x training domain) on every domain."""
    return [
        paths.GEN_ERRORS.format(kind=k, domain=d) for k in GEN_MODEL_KINDS for d in GEN_TRAINING
    ]


def generalization_model_outputs() -> list[str]:
    """One model per kind and training domain, and its errors on every domain."""
    models = [GEN_MODEL_PATHS[k].format(domain=d) for k in GEN_MODEL_KINDS for d in GEN_TRAINING]
    return models + generalization_errors()


def generalization_figures() -> list[str]:
    """Report figures of the branch."""
    per_kind = [paths.GEN_ERROR_DISTANCE_FIGURE, paths.GEN_HELDOUT_FIGURE]
    return [t.format(kind=k) for t in per_kind for k in GEN_MODEL_KINDS] + [
        paths.GEN_DISTANCE_MATRIX_FIGURE,
        paths.GEN_SPECTRA_FIGURE,
    ]


def generalization_outputs() -> list[str]:
    """Everything of the branch."""
    return (
        generalization_spectra_outputs()
        + [paths.GEN_FEATURES, paths.GEN_DISTANCES]
        + generalization_model_outputs()
        + [paths.GEN_METRICS]
        + generalization_figures()
    )

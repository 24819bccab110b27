"""Input functions and settings of the ex-situ transfer study (rules: exsitu_transfer.smk)."""

from simbridge.models.exsitu_transfer import transfer_universe_params
from simbridge.models.training import derive_seed

TRANSFER = GEN["exsitu_transfer"]
TRANSFER_ENABLED = bool(TRANSFER["enabled"])
TRANSFER_UNIVERSES = {u["name"]: u for u in TRANSFER["universes"]}
if TRANSFER_ENABLED and not TRANSFER_UNIVERSES:
    raise SimBridgeConfigError(
        "generalization.exsitu_transfer.enabled is true but its universes list is empty: list "
        "at least one universe (see config.yaml) or set enabled: false"
    )
TRANSFER_MODELS = list(EXSITU_MODELS)


wildcard_constraints:
    transfer="|".join(TRANSFER_UNIVERSES) or "(?!)",


def transfer_base_path(name: str) -> str:
    """illustris_python basePath of a transfer universe: its archive or its demo's output/."""
    base = TRANSFER_UNIVERSES[name]["base_path"]
    if base is not None:
        return base
    return os.path.join(paths.GEN_TRANSFER_UNIVERSE_DIR.format(transfer=name), "output")


def transfer_universe_input(wildcards) -> list[str]:
    """The demo universe's summary for a demo universe; nothing for an archive."""
    u = TRANSFER_UNIVERSES[wildcards.transfer]
    if u["base_path"] is None:
        return [paths.GEN_TRANSFER_UNIVERSE_SUMMARY.format(transfer=wildcards.transfer)]
    return []


def transfer_maps(wildcards) -> dict[str, str]:
    """Map files of every transfer universe, keyed by universe."""
    return {n: paths.GEN_TRANSFER_MAPS.format(transfer=n) for n in TRANSFER_UNIVERSES}


def exsitu_transfer_outputs() -> list[str]:
    """Maps of every transfer universe, and per model of the sweep its metrics and figure."""
    if not TRANSFER_ENABLED:
        return []
    maps = [paths.GEN_TRANSFER_MAPS.format(transfer=n) for n in TRANSFER_UNIVERSES]
    per_model = [
        t.format(model=m)
        for m in TRANSFER_MODELS
        for t in (paths.GEN_TRANSFER_METRICS, paths.GEN_TRANSFER_FIGURE)
    ]
    return maps + per_model


def exsitu_expected_error_outputs() -> list[str]:
    """The expected per-pixel error of every inference input file (with the study on)."""
    if not TRANSFER_ENABLED:
        return []
    return [
        expand(sim_path(paths.EXSITU_INFERENCE_EXPECTED_ERROR), model=EXSITU_INFERENCE_MODEL,
               name=name)[0]
        for name in EXSITU_INFERENCE_INPUTS
    ]

"""Config, path helpers and input functions of the realism branch (rules: realism.smk)."""

import os

from simbridge.models.training import derive_seed

REALISM = config["realism"]
REALISM_REAL_OBSERVED = REALISM["observed_dir"] is not None
#: every TNG-layout source of the branch: the observed set (unless real cutouts) and the sims
REALISM_SOURCES = {s["name"]: s for s in REALISM["simulations"]}
if not REALISM_REAL_OBSERVED:
    REALISM_SOURCES = {"observed": {"name": "observed", **REALISM["observed"]}, **REALISM_SOURCES}
REALISM_DEMO_UNIVERSES = [n for n, s in REALISM_SOURCES.items() if s.get("base_path") is None]
REALISM_SIMULATIONS = [s["name"] for s in REALISM["simulations"]]
REALISM_SHARED_INIT = bool(REALISM["pixelcnn"].get("shared_init", True))
#: pooled: the shared initialisation of a pair (observed + archetype train images), from which
#: both models of the pair are fine-tuned so that their sky modelling cancels in the LLR
REALISM_MODELS = (["pooled"] if REALISM_SHARED_INIT else []) + ["observed", "archetype"]
if REALISM["controls"]["no_rotation"]:
    REALISM_MODELS += (["pooled_norot"] if REALISM_SHARED_INIT else []) + [
        "observed_norot", "archetype_norot"]


wildcard_constraints:
    universe="|".join(REALISM_DEMO_UNIVERSES) or "(?!)",
    imageset="|".join(["observed", "archetype", "empty_sky", *REALISM_SIMULATIONS]),
    model="|".join(REALISM_MODELS),


def realism_universe_demo(name: str) -> dict:
    """Demo-universe settings of one source: the branch's shared ones, then its own."""
    return {**dict(REALISM.get("demo_universe", {})), **dict(REALISM_SOURCES[name].get("demo", {}))}


def realism_universe_seed(name: str) -> int:
    """Each demo universe draws other galaxies: a seed per source name."""
    return derive_seed(config["seed"], "realism-universe", name) % (2**32)


def realism_base_path(name: str) -> str:
    """illustris_python basePath of a source: its archive or its demo universe's output/."""
    base = REALISM_SOURCES[name].get("base_path")
    if base is not None:
        return os.path.expanduser(base)
    return os.path.join(paths.REALISM_UNIVERSE_DIR.format(universe=name), "output")


def realism_source_input(wildcards) -> list[str]:
    """The demo universe's summary when the set is mocked from a demo universe."""
    name = wildcards.imageset
    if name in REALISM_DEMO_UNIVERSES:
        return [paths.REALISM_UNIVERSE_SUMMARY.format(universe=name)]
    return []


def realism_mock_path(template: str) -> str:
    """An image-set path whose wildcard matches only the mocked sets (observed, simulations)."""
    names = "|".join(["observed", *REALISM_SIMULATIONS])
    return template.replace("{imageset}", f"{{imageset,{names}}}")


def realism_set(name: str) -> str:
    return paths.REALISM_SET.format(imageset=name)


def realism_manifest(name: str) -> str:
    return paths.REALISM_SET_MANIFEST.format(imageset=name)


def realism_model_input(wildcards) -> dict[str, str]:
    """The image set a model trains on (observed set or its archetypes; pooled: both), the
    manifest that holds the splits and, with shared_init, the pooled model it starts from."""
    kind, _, suffix = wildcards.model.partition("_")
    if kind == "pooled":
        return {"images": realism_set("observed"), "images_archetype": realism_set("archetype"),
                "manifest": realism_manifest("observed")}
    inputs = {"images": realism_set(kind), "manifest": realism_manifest("observed")}
    if REALISM_SHARED_INIT:
        init = "pooled" + (f"_{suffix}" if suffix else "")
        inputs["init"] = paths.REALISM_MODEL.format(model=init)
    return inputs


def realism_evaluation_inputs() -> dict[str, str]:
    names = ["observed", "archetype", "empty_sky", *REALISM_SIMULATIONS]
    inputs = {f"set_{n}": realism_set(n) for n in names}
    inputs.update({f"manifest_{n}": realism_manifest(n) for n in names})
    inputs.update({f"model_{m}": paths.REALISM_MODEL.format(model=m) for m in REALISM_MODELS})
    return inputs


REALISM_FIGURES = ["llr_distributions", "llr_trends", "llr_maps", "training_curves"]


def realism_outputs() -> list[str]:
    """Everything of the branch."""
    return (
        [paths.REALISM_METRICS, paths.REALISM_SCORES]
        + [paths.REALISM_HISTORY.format(model=m) for m in REALISM_MODELS]
        + [paths.REALISM_FIGURE.format(figure=f) for f in REALISM_FIGURES]
    )

"""Names of the models of a sweep and of the inference inputs and model (light module: the
Snakefile imports it without torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simbridge.errors import SimBridgeConfigError


def model_name(latent_dim: int, beta: float) -> str:
    """Name of one model of the sweep, e.g. 'z10_beta7e-05'."""
    return f"z{int(latent_dim)}_beta{float(beta):g}"


def inference_inputs(config: dict[str, Any]) -> dict[str, str]:
    """Name (file stem) -> path of every input file of exsitu_model.inference.input_files."""
    files = config["exsitu_model"].get("inference", {}).get("input_files", []) or []
    out: dict[str, str] = {}
    for path in files:
        name = Path(path).name.removesuffix(".h5").removesuffix(".hdf5")
        if name in out:
            raise SimBridgeConfigError(
                f"exsitu_model.inference.input_files: {out[name]!r} and {path!r} have the same "
                f"name {name!r}; outputs are named after the file, so rename one of them")
        if not name or not all(c.isalnum() or c in "_.-" for c in name):
            raise SimBridgeConfigError(
                f"exsitu_model.inference.input_files: {path!r}: use a file name of letters, "
                "digits, '_', '.' and '-' (outputs are named after it)")
        out[name] = str(path)
    return out


def inference_model(config: dict[str, Any]) -> str:
    """The model of the sweep that inference applies (exsitu_model.inference.model; null: the
    first of the sweep)."""
    model = config["exsitu_model"]
    sweep = [model_name(latent, beta) for latent in model["latent_dims"]
             for beta in model["betas"]]
    chosen = model.get("inference", {}).get("model")
    if chosen is None:
        return sweep[0]
    if chosen not in sweep:
        raise SimBridgeConfigError(
            f"exsitu_model.inference.model is {chosen!r}, which is not a model of the sweep "
            f"{sweep}; set it to one of them (or null for {sweep[0]})")
    return str(chosen)


def inference_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What an inference output depends on (the rule's params): seed, model and settings."""
    inf = dict(config["exsitu_model"].get("inference", {}))
    keep = ("n_draws", "quantiles", "pixel_outlier_sigma", "ood_quantile")
    return {"seed": config["seed"], "model": inference_model(config),
            **{k: inf[k] for k in keep}}

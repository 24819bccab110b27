"""Loading and validating the workflow configuration (the same schema the Snakefile uses)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from simbridge.errors import SimBridgeConfigError

#: The JSON schema of config.yaml; the Snakefile validates against the same file.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` against the schema, fill defaults, and return it.

    Raises SimBridgeConfigError naming the offending key (snakemake.utils.validate does the work).
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    if not SCHEMA_PATH.is_file():
        raise SimBridgeConfigError(
            f"config schema not found at {SCHEMA_PATH}; run SimBridge from its source tree "
            "(pip install -e .)"
        )
    config = copy.deepcopy(config)
    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as err:
        raise SimBridgeConfigError(f"invalid configuration: {err}") from None
    check_config_semantics(config)
    return config


def check_config_semantics(config: dict[str, Any]) -> None:
    """Checks the schema cannot express: split fractions sum to 1, bin edges span [0, 1],
    min_views <= max_views, maps.npix divisible by 2^(model levels). Raises
    SimBridgeConfigError naming the key."""
    from simbridge.dataset.balance import check_bin_edges, check_view_range
    from simbridge.dataset.splits import split_fractions

    split_fractions(config["splits"])
    check_bin_edges(config["balancing"]["exsitu_fraction_bins"])
    check_view_range(config["balancing"]["min_views"], config["balancing"]["max_views"])
    model = config.get("exsitu_model")
    if model is not None:
        levels = len(model["channels"])
        if config["maps"]["npix"] % 2**levels:
            raise SimBridgeConfigError(
                f"maps.npix = {config['maps']['npix']} cannot be halved once per level of "
                f"exsitu_model.channels ({levels} levels): use an npix divisible by {2**levels} "
                "or fewer channel levels")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise SimBridgeConfigError(f"config file {path} does not exist")
    with path.open() as fh:
        try:
            config = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise SimBridgeConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise SimBridgeConfigError(f"config file {path} must hold a mapping of settings")
    return validate_config(config)


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of ``config`` (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def with_read_settings(settings: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (a rule's params) plus the reading settings of the full ``config``.

    Reading settings change how fast data is read, not what is computed, so they are kept out
    of rule params (a change to them reruns nothing).
    """
    out = copy.deepcopy(dict(settings))
    out.setdefault("tng", {})["max_read_gap_particles"] = config["tng"]["max_read_gap_particles"]
    return out

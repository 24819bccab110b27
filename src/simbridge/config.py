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
    if not SCHEMA_PATH.is_file():
        raise SimBridgeConfigError(
            f"config schema not found at {SCHEMA_PATH}; run SimBridge from its source tree "
            "(pip install -e .)"
        )
    config = copy.deepcopy(config)
    validate_workflow_config(config)
    return config


def validate_workflow_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH
                             ) -> None:
    """Validate ``config`` in place (schema defaults filled in, as snakemake.utils.validate
    with set_default does), then run :func:`check_config_semantics`.

    The Snakefile calls this on Snakemake's config. A schema violation becomes a
    SimBridgeConfigError that starts with the key path, the value and what is allowed, instead
    of jsonschema's dump of the whole sub-schema.
    """
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema_path = Path(schema_path).resolve()
    try:
        validate(config, str(schema_path), set_default=True)
    except WorkflowError as err:
        cause = err.__cause__ or err.__context__  # validate raises it inside its except
        if not isinstance(cause, jsonschema.ValidationError):
            raise SimBridgeConfigError(f"invalid configuration: {err}") from None
        raise SimBridgeConfigError(describe_validation_error(cause)) from None
    check_config_semantics(config, _load_schema(schema_path))


def describe_validation_error(err: Any) -> str:
    """One jsonschema ValidationError as 'config key <path> = <value>: <what is allowed>'."""
    import difflib

    path = ".".join(str(p) for p in err.absolute_path)
    where = f"config key {path}" if path else "the configuration (top level)"
    schema, value, kind = err.schema, err.instance, err.validator
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        lines = []
        for key in sorted(set(value) - set(allowed)):
            full = f"{path}.{key}" if path else key
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            lines.append(f"unknown config key {full}{hint}")
        lines.append(f"  allowed keys {'of ' + path if path else 'at the top level'}: "
                     + ", ".join(allowed))
        return "\n".join(lines)
    if kind == "required":
        return f"{where} lacks a required key: {err.message}"
    if kind == "enum":
        allowed_text = "allowed values: " + ", ".join(repr(v) for v in err.validator_value)
    elif kind == "type":
        allowed_text = f"expected type {err.validator_value}, got {type(value).__name__}"
    elif kind in _BOUNDS:
        allowed_text = f"must be {_BOUNDS[kind]} {err.validator_value}"
    else:
        allowed_text = err.message
    lines = [f"{where} = {value!r} is not allowed", f"  {allowed_text}"]
    if schema.get("description"):
        lines.append(f"  {path or 'config'}: {' '.join(str(schema['description']).split())}")
    return "\n".join(lines)


_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema as a dict."""
    with Path(path).open() as fh:
        return yaml.safe_load(fh)


def _float_integers(schema: dict[str, Any], value: Any, path: str) -> list[tuple[str, Any]]:
    """(key path, value) of every float in ``value`` where ``schema`` wants an integer.

    jsonschema counts 32.0 as an integer and YAML reads ``32.0`` as a float, so the schema
    alone lets ``maps.npix: 32.0`` through to code that needs an int.
    """
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    found: list[tuple[str, Any]] = []
    if "integer" in types and "number" not in types and isinstance(value, float):
        found.append((path, value))
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value and isinstance(sub, dict):
                found += _float_integers(sub, value[key], f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += _float_integers(schema["items"], item, f"{path}[{i}]")
    return found


def check_config_semantics(config: dict[str, Any], schema: dict[str, Any] | None = None
                           ) -> None:
    """Checks the schema cannot express: integers written as floats (``32.0``), split
    fractions sum to 1 with no empty split, bin edges span [0, 1], min_views <= max_views,
    maps.npix divisible by 2^(model levels). Raises SimBridgeConfigError naming the key."""
    from simbridge.dataset.balance import check_bin_edges, check_view_range
    from simbridge.dataset.splits import split_fractions

    floats = _float_integers(schema if schema is not None else _load_schema(), config, "")
    if floats:
        raise SimBridgeConfigError("\n".join(
            f"config key {key} = {value!r} must be an integer: write {value:.0f}"
            if float(value).is_integer() else f"config key {key} = {value!r} must be an integer"
            for key, value in floats) + "\n  (YAML reads 32.0 as a float; the schema's integer "
            "type lets it through, the code that uses it does not)")
    split_fractions(config["splits"])
    empty = [s for s, v in config["splits"]["fractions"].items() if float(v) <= 0]
    if empty:
        raise SimBridgeConfigError(
            f"splits.fractions.{empty[0]} = {config['splits']['fractions'][empty[0]]}: every "
            "split needs a share > 0 (models train on train, stop early on validation and are "
            "evaluated on test); e.g. fractions: {train: 0.75, validation: 0.10, test: 0.15}")
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
    return validate_config(read_config_file(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML config file; a syntax error names the file, line and column.

    The Snakefile calls it on config.yaml before Snakemake's own loader, whose error ("not
    valid JSON or YAML") names neither.
    """
    path = Path(path)
    if not path.is_file():
        raise SimBridgeConfigError(f"config file {path} does not exist")
    with path.open() as fh:
        try:
            config = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err)
            context, opened = getattr(err, "context", None), getattr(err, "context_mark", None)
            if context and opened is not None:  # e.g. a bracket opened earlier, never closed
                problem += f" ({context} at line {opened.line + 1}, column {opened.column + 1})"
            raise SimBridgeConfigError(
                f"config file {path.resolve()}{where} is not valid YAML: {problem}\n"
                "  fix: correct the YAML syntax there (brackets and quotes closed, spaces "
                "not tabs, 'key: value' with a space after the colon)") from None
    if not isinstance(config, dict):
        raise SimBridgeConfigError(f"config file {path} must hold a mapping of settings")
    return config


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

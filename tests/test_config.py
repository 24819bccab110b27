"""Config validation (the schema the Snakefile uses) and env files agreeing with pyproject."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from simbridge.config import config_hash, load_config, validate_config
from simbridge.errors import SimBridgeConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_demo_config_validates_and_gets_defaults(demo_config):
    cfg = validate_config(demo_config)
    assert cfg["maps"]["npix"] == 32
    assert cfg["tng"]["snapshots"] == [99, 91]
    del demo_config["maps"]["min_particles_per_pixel"]
    del demo_config["exsitu_model"]["cvae"]["free_bits"]
    cfg = validate_config(demo_config)
    assert cfg["maps"]["min_particles_per_pixel"] == 1  # filled by the schema defaults
    assert cfg["exsitu_model"]["cvae"]["free_bits"] == 0.0
    assert cfg["exsitu_model"]["flow"]["weight_decay"] == 0.0
    assert cfg["exsitu_model"]["device"] == "auto"


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("maps", "npixx", 64, "npixx"),  # misspelt key
        ("maps", "npix", "128", "npix"),  # wrong type
        ("tng", "stellar_mass_min_msun", -1.0, "stellar_mass_min_msun"),
        ("tng", "snapshots", [], "snapshots"),
        (None, "sed", 1, "sed"),
    ],
)
def test_bad_config_names_the_key(demo_config, section, key, value, named):
    bad = copy.deepcopy(demo_config)
    (bad[section] if section else bad)[key] = value
    with pytest.raises(SimBridgeConfigError, match=named):
        validate_config(bad)


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("splits", "fractions", {"train": 0.8, "validation": 0.1, "test": 0.2},
         "splits.fractions"),
        ("balancing", "exsitu_fraction_bins", [0.0, 0.5, 0.9], "exsitu_fraction_bins"),
        ("balancing", "exsitu_fraction_bins", [0.0, 0.6, 0.5, 1.0], "exsitu_fraction_bins"),
        ("balancing", "max_views", 1, "max_views"),
    ],
)
def test_settings_the_schema_cannot_check_are_checked(demo_config, section, key, value, named):
    bad = copy.deepcopy(demo_config)
    bad[section][key] = value
    with pytest.raises(SimBridgeConfigError, match=named):
        validate_config(bad)


def test_load_config_errors(tmp_path):
    with pytest.raises(SimBridgeConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(SimBridgeConfigError, match="not valid YAML"):
        load_config(broken)


def test_config_hash_ignores_key_order_but_not_values(demo_config):
    reordered = dict(reversed(list(demo_config.items())))
    assert config_hash(reordered) == config_hash(demo_config)
    changed = copy.deepcopy(demo_config)
    changed["maps"]["npix"] = 64
    assert config_hash(changed) != config_hash(demo_config)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    """Requirement with extras dropped and spaces removed, e.g. 'snakemake>=9.27,<10'."""
    return re.sub(r"\[.*?\]", "", requirement).replace(" ", "").lower().replace("_", "-")


def test_envs_list_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"]
    wanted = {_name(r): _spec(r) for r in runtime}
    seen: dict[str, str] = {}
    for env_file in sorted((ROOT / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env_file.read_text())["dependencies"]
        flat = []
        for dep in deps:
            flat += dep["pip"] if isinstance(dep, dict) else [dep]
        for dep in flat:
            name = _name(dep)
            if name in {"python", "pip", "-e"} or dep.startswith("-e"):
                continue
            assert name in wanted, f"{env_file.name} lists {name}, which pyproject.toml lacks"
            assert _spec(dep) == wanted[name], (
                f"{env_file.name} pins {dep}, pyproject.toml {wanted[name]}"
            )
            seen[name] = dep
    assert set(seen) == set(wanted), f"not in any env: {set(wanted) - set(seen)}"


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("maps", "npix", 32.0, "maps.npix = 32.0"),
        ("tng", "n_batches", 4.0, "tng.n_batches = 4.0"),
        ("exsitu_model", "latent_dims", [10.0, 4], "exsitu_model.latent_dims[0] = 10.0"),
    ],
)
def test_integer_written_as_float_is_a_config_error_naming_the_key(
        demo_config, tmp_path, section, key, value, named):
    """jsonschema's integer type accepts 32.0 (and YAML reads `32.0` as a float)."""
    bad = copy.deepcopy(demo_config)
    bad[section][key] = value
    with pytest.raises(SimBridgeConfigError, match=re.escape(named)) as info:
        validate_config(bad)
    assert "must be an integer" in str(info.value)
    text = (ROOT / "config.yaml").read_text().replace("  npix: 32 ", "  npix: 32.0 ")
    assert "npix: 32.0" in text
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(SimBridgeConfigError, match=r"maps\.npix = 32\.0 must be an integer"):
        load_config(tmp_path / "config.yaml")


@pytest.mark.parametrize(
    ("change", "first_line", "allowed"),
    [
        (lambda c: c["splits"].update(lineage="trees"), "config key splits.lineage = 'trees'",
         "allowed values: 'auto', 'merger_trees', 'particle_ids'"),
        (lambda c: c["maps"].update(npix="128"), "config key maps.npix = '128'",
         "expected type integer"),
        (lambda c: c["exsitu_model"]["cvae"].update(epochs=0),
         "config key exsitu_model.cvae.epochs = 0", "must be >= 1"),
        (lambda c: c["balancing"].update(min_veiws=2), "unknown config key balancing.min_veiws "
         "(did you mean min_views?)", "allowed keys of balancing: exsitu_fraction_bins"),
    ],
)
def test_validation_error_shows_key_value_and_allowed_values_first(
        demo_config, change, first_line, allowed):
    bad = copy.deepcopy(demo_config)
    change(bad)
    with pytest.raises(SimBridgeConfigError) as info:
        validate_config(bad)
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0].startswith(first_line), message
    assert allowed in lines[1], message
    assert "Failed validating" not in message and "On instance" not in message  # no schema dump
    assert len(lines) <= 3


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    broken = tmp_path / "config.yaml"
    broken.write_text("seed: 1\ntng:\n  snapshots: [99, 91\n  n_batches: 4\n")
    with pytest.raises(SimBridgeConfigError) as info:
        load_config(broken)
    message = str(info.value)
    assert str(broken.resolve()) in message
    assert re.search(r"line 4, column \d+ is not valid YAML", message), message
    assert "line 3, column 14" in message  # where the unclosed bracket opened
    assert "fix:" in message


@pytest.mark.parametrize(
    ("split", "fractions"),
    [
        ("test", {"train": 0.85, "validation": 0.15, "test": 0.0}),
        ("validation", {"train": 0.85, "validation": 0.0, "test": 0.15}),
        ("train", {"train": 0.0, "validation": 0.5, "test": 0.5}),
    ],
)
def test_a_zero_split_share_is_a_config_error_naming_the_key(demo_config, split, fractions):
    """A split without galaxies would fail only after training (no early stopping or test)."""
    bad = copy.deepcopy(demo_config)
    bad["splits"]["fractions"] = fractions
    with pytest.raises(SimBridgeConfigError, match=rf"splits\.fractions\.{split} = 0"):
        validate_config(bad)


def test_tilde_in_base_path_is_expanded(demo_config, tmp_path, monkeypatch):
    from simbridge.paths import tng_base_path

    monkeypatch.setenv("HOME", str(tmp_path))
    demo_config["tng"]["base_path"] = "~/TNG100-1/output"
    assert tng_base_path(demo_config) == tmp_path / "TNG100-1" / "output"

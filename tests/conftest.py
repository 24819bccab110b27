"""Shared fixtures: a small demo configuration and a tiny demo universe."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: Lines that tests want printed in the terminal summary (e.g. measured planning times).
TIMINGS: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what tests recorded in TIMINGS, so that CI logs show it."""
    if TIMINGS:
        terminalreporter.section("SimBridge timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)


def small_config(**maps_overrides) -> dict:
    """The demo config shrunk for tests: fewer galaxies, small maps, one chunked universe."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["branches"] = ["exsitu"]  # the other branches have their own test configs
    # the ex-situ transfer study adds universes to `infer`; its own test switches it on
    cfg["generalization"]["exsitu_transfer"]["enabled"] = False
    cfg["demo_universe"]["n_galaxies"] = 16
    cfg["tng"]["n_batches"] = 2
    cfg["maps"].update({"npix": 32, "n_example_galaxies": 2})
    cfg["balancing"].update({"min_views": 2, "max_views": 6})
    cfg["maps"].update(maps_overrides)
    # a tiny ex-situ model: one latent size, a few epochs, few draws (seconds on a CPU)
    model = cfg["exsitu_model"]
    model.update({"latent_dims": [3], "betas": [7e-5], "channels": [4, 8], "summary_dim": 8})
    model["cvae"].update({"epochs": 2, "kl_warmup_epochs": 1, "batch_size": 16})
    model["flow"].update({"epochs": 3, "hidden_features": [16], "transforms": 2})
    model["evaluation"].update({"n_draws": 10, "n_example_galaxies": 2})
    return cfg


@pytest.fixture()
def small_demo_config() -> dict:
    return small_config()

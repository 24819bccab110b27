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
    cfg["demo_universe"]["n_galaxies"] = 16
    cfg["tng"]["n_batches"] = 2
    cfg["maps"].update({"npix": 32, "n_example_galaxies": 2})
    cfg["balancing"].update({"min_views": 2, "max_views": 6})
    cfg["maps"].update(maps_overrides)
    return cfg


@pytest.fixture()
def small_demo_config() -> dict:
    return small_config()

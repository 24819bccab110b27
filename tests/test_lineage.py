"""Lineage on the demo universe: particle-ID links and SubLink links against the demo's truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simbridge.config import validate_config
from simbridge.dataset.lineage import link_galaxies
from simbridge.errors import SimBridgeInputError
from simbridge.extract.tng_maps import select_galaxies
from simbridge.sims.tng_demo import generate_demo_universe
from tests.conftest import small_config


@pytest.fixture(scope="module")
def universe(tmp_path_factory) -> tuple[Path, dict, dict]:
    cfg = validate_config(small_config())
    cfg["demo_universe"]["n_galaxies"] = 24
    sim = tmp_path_factory.mktemp("lineage") / "TNG-demo"
    summary = generate_demo_universe(sim, cfg["demo_universe"], cfg["seed"])
    base = sim / "output"
    catalogs = {s: select_galaxies(base, s, 1e9) for s in (99, 91)}
    return base, summary, catalogs


def truth_links(summary: dict) -> set[tuple[int, int]]:
    """(subhalo at 91, subhalo at 99) from the demo's own bookkeeping."""
    out = set()
    for gal in summary["galaxies"]:
        central = gal["central_subhalo_id"]
        out.add((central["91"], central["99"]))
        for sid in gal.get("merging_satellite_subhalo_id", {}).values():
            out.add((sid, central["99"]))  # merged into the host by z=0
        sat = gal.get("satellite_subhalo_id", {})
        if "91" in sat and "99" in sat:
            out.add((sat["91"], sat["99"]))
    return out


def link_set(links: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(links["subhalo_id"], links["descendant_subhalo_id"], strict=True))


def restricted(truth: set, catalogs: dict) -> set:
    sel = {s: set(c.loc[c["status"] == "selected", "subhalo_id"]) for s, c in catalogs.items()}
    return {(a, b) for a, b in truth if a in sel[91] and b in sel[99]}


@pytest.mark.parametrize("method", ["particle_ids", "merger_trees"])
def test_links_reproduce_the_demo_truth(universe, method):
    base, summary, catalogs = universe
    cfg = {"lineage": method, "min_shared_star_fraction": 0.1}
    lineage, links = link_galaxies(base, catalogs, cfg, max_gap=10**6)
    assert (links["method"] == method).all()
    expected = restricted(truth_links(summary), catalogs)
    assert any(a != b for a, b in expected)  # ids differ between snapshots: not trivial
    assert link_set(links) == expected
    # merged satellites share the lineage group of the host they fell into
    group = lineage.set_index(["snapshot", "subhalo_id"])["lineage_group"]
    for a, b in expected:
        assert group[(91, a)] == group[(99, b)]
    n_groups_expected = len(lineage) - len(expected)  # every link joins two groups (a forest)
    assert lineage["lineage_group"].nunique() == n_groups_expected


def test_auto_prefers_trees_and_falls_back_to_particle_ids(universe, tmp_path):
    base, summary, catalogs = universe
    cfg = {"lineage": "auto", "min_shared_star_fraction": 0.1}
    _, links = link_galaxies(base, catalogs, cfg, max_gap=10**6)
    assert set(links["method"]) == {"merger_trees"}
    no_trees = validate_config(small_config())
    no_trees["demo_universe"].update(n_galaxies=24, merger_trees=False)
    sim = tmp_path / "TNG-demo"
    generate_demo_universe(sim, no_trees["demo_universe"], no_trees["seed"])
    cats = {s: select_galaxies(sim / "output", s, 1e9) for s in (99, 91)}
    _, fallback = link_galaxies(sim / "output", cats, cfg, max_gap=10**6)
    assert set(fallback["method"]) == {"particle_ids"}
    assert link_set(fallback) == link_set(links)
    with pytest.raises(SimBridgeInputError, match="no SubLink trees"):
        link_galaxies(sim / "output", cats, {**cfg, "lineage": "merger_trees"}, max_gap=10**6)


def test_a_single_snapshot_makes_one_group_per_galaxy(universe):
    base, _, catalogs = universe
    cfg = {"lineage": "auto", "min_shared_star_fraction": 0.1}
    lineage, links = link_galaxies(base, {99: catalogs[99]}, cfg, max_gap=10**6)
    assert links.empty and list(links.columns)[:2] == ["snapshot", "subhalo_id"]
    assert lineage["lineage_group"].is_unique and (lineage["group_size"] == 1).all()
    assert len(lineage) == (catalogs[99]["status"] == "selected").sum()


def test_three_snapshots_link_across_an_unselected_middle_galaxy(tmp_path):
    """SubLink may skip a snapshot, and a galaxy may miss the cut at the middle one: every
    earlier snapshot is linked to every later one, so the lineage still holds together."""
    from tests.test_tng_trees import (
        HAND_N_SUBHALOS,
        brute_descendant,
        read_trees,
        write_hand_built,
    )

    base = write_hand_built(tmp_path / "sim")
    catalogs = {s: pd.DataFrame({"subhalo_id": range(n), "status": "selected"})
                for s, n in HAND_N_SUBHALOS.items()}
    catalogs[98].loc[0, "status"] = "skipped"  # B, the main progenitor of A at snapshot 98
    cfg = {"lineage": "merger_trees", "min_shared_star_fraction": 0.1}
    lineage, links = link_galaxies(base, catalogs, cfg, max_gap=0)
    trees = read_trees(base)
    expected = set()
    snaps = sorted(HAND_N_SUBHALOS)
    for i, early in enumerate(snaps):
        for late in snaps[i + 1:]:
            for sub in range(HAND_N_SUBHALOS[early]):
                if (early, sub) == (98, 0):
                    continue
                desc = brute_descendant(trees, early, sub, late)
                if desc >= 0 and (late, desc) != (98, 0):
                    expected.add((early, sub, late, desc))
    got = set(zip(links["snapshot"], links["subhalo_id"], links["descendant_snapshot"],
                  links["descendant_subhalo_id"], strict=True))
    assert got == expected
    group = lineage.set_index(["snapshot", "subhalo_id"])["lineage_group"]
    # D (97, 0) reaches A (99, 0) only through the unselected B; F (97, 1) skips 98 altogether
    assert group[(97, 0)] == group[(99, 0)] == group[(97, 1)]

"""Balancing, lineage linking, grouped splits and the leakage check, against references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simbridge.dataset.balance import exsitu_bin, plan_views, views_per_bin
from simbridge.dataset.lineage import lineage_labels, particle_id_links
from simbridge.dataset.splits import (
    SPLITS,
    assign_group_splits,
    find_leaks,
    make_splits,
    split_fractions,
)
from simbridge.errors import SimBridgeConfigError

EDGES = np.linspace(0.0, 1.0, 11)


# --------------------------------------------------------------------------- balancing

def test_views_per_bin_follow_the_rarity_rule():
    # clip(round(2 * 100 / N), 2, 12): 100 -> 2, 40 -> 5, 10 -> 20 capped at 12, empty -> 0
    np.testing.assert_array_equal(views_per_bin(np.array([100, 40, 10, 0, 1]), 2, 12),
                                  [2, 5, 12, 0, 12])
    np.testing.assert_array_equal(views_per_bin(np.array([7, 7]), 3, 9), [3, 3])
    with pytest.raises(SimBridgeConfigError, match="min_views"):
        views_per_bin(np.array([1]), 5, 2)


def test_exsitu_bins_are_half_open_with_the_last_closed():
    frac = np.array([0.0, 0.0999, 0.1, 0.55, 0.9, 1.0])
    np.testing.assert_array_equal(exsitu_bin(frac, EDGES), [0, 0, 1, 5, 9, 9])
    # a second reference: numpy's histogram uses the same convention
    counts, _ = np.histogram(frac, EDGES)
    np.testing.assert_array_equal(np.bincount(exsitu_bin(frac, EDGES), minlength=10), counts)


def test_plan_gives_rare_galaxies_more_views_and_skipped_galaxies_none():
    rng = np.random.default_rng(1)
    frac = np.concatenate([rng.uniform(0.0, 0.2, 200), rng.uniform(0.8, 1.0, 5)])
    measured = pd.DataFrame({
        "snapshot": 99, "subhalo_id": np.arange(len(frac) + 1), "batch": 0,
        "status": ["measured"] * len(frac) + ["skipped"], "reason": [""] * len(frac) + ["x"],
        "stellar_mass_msun": 1e10, "exsitu_fraction_global": [*frac, np.nan],
    })
    plan, summary = plan_views(measured, {"exsitu_fraction_bins": EDGES.tolist(),
                                          "min_views": 2, "max_views": 16})
    assert plan["n_views"].iloc[-1] == 0 and plan["exsitu_bin"].iloc[-1] == -1
    common = plan.loc[plan["exsitu_fraction_global"] < 0.2, "n_views"]
    rare = plan.loc[plan["exsitu_fraction_global"] > 0.8, "n_views"]
    assert common.max() < rare.min() <= 16
    assert summary["n_samples"] == plan["n_views"].sum()
    assert sum(summary["galaxies_per_bin"]) == len(frac)
    # after balancing the rarest populated bins are much closer to the common ones
    after = np.asarray(summary["samples_per_bin"], dtype=float)
    before = np.asarray(summary["samples_per_bin_unbalanced"], dtype=float)
    filled = before > 0
    assert after[filled].max() / after[filled].min() < before[filled].max() / before[
        filled].min()


def test_bin_edges_must_span_zero_to_one():
    measured = pd.DataFrame({"snapshot": [99], "subhalo_id": [0], "batch": [0],
                             "status": ["measured"], "reason": [""],
                             "stellar_mass_msun": [1e10], "exsitu_fraction_global": [0.5]})
    with pytest.raises(SimBridgeConfigError, match="exsitu_fraction_bins"):
        plan_views(measured, {"exsitu_fraction_bins": [0.0, 0.5, 0.9], "min_views": 1,
                              "max_views": 2})


# --------------------------------------------------------------------------- lineage

def brute_force_links(early: list[set], late: list[set], min_fraction: float) -> set:
    out = set()
    for i, e in enumerate(early):
        for j, lt in enumerate(late):
            if e and len(e & lt) / len(e) >= min_fraction:
                out.add((i, j))
    return out


def test_particle_id_links_match_brute_force_set_intersections():
    rng = np.random.default_rng(5)
    universe = rng.permutation(10**6)[:6000].astype(np.uint64) + np.uint64(2**40)
    early = [set(universe[k * 400:(k + 1) * 400].tolist()) for k in range(10)]
    late: list[set] = [set() for _ in range(7)]
    for ids in early:  # each early galaxy spreads its stars over 1-3 descendants
        ids = list(ids)
        rng.shuffle(ids)
        shares = rng.dirichlet(np.ones(rng.integers(1, 4)))
        cuts = (np.cumsum(shares)[:-1] * len(ids)).astype(int)
        for part, j in zip(np.split(np.array(ids, dtype=np.uint64), cuts),
                           rng.choice(7, len(shares), replace=False), strict=True):
            late[j] |= set(part[: int(0.9 * len(part))].tolist())  # some stars are lost
    late[3] |= set(universe[5000:5500].tolist())  # new stars, shared with no one

    def flatten(sets):
        ids = np.array([x for s in sets for x in s], dtype=np.uint64)
        owner = np.concatenate([np.full(len(s), k) for k, s in enumerate(sets)])
        return ids, owner

    for min_fraction in (0.05, 0.3, 0.6):
        links = particle_id_links(*flatten(early), len(early), *flatten(late), min_fraction)
        assert set(zip(links["early"], links["late"], strict=True)) == brute_force_links(
            early, late, min_fraction)
        for row in links.itertuples():
            assert row.shared_fraction == pytest.approx(
                len(early[row.early] & late[row.late]) / len(early[row.early]))


def flood_fill_components(n: int, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """Brute-force reference: breadth-first search over an adjacency list."""
    adjacent: list[set[int]] = [set() for _ in range(n)]
    for a, b in pairs:
        adjacent[a].add(int(b))
        adjacent[b].add(int(a))
    labels = np.full(n, -1)
    n_comp = 0
    for start in range(n):
        if labels[start] >= 0:
            continue
        labels[start], queue = n_comp, [start]
        while queue:
            for nb in adjacent[queue.pop()]:
                if labels[nb] < 0:
                    labels[nb] = n_comp
                    queue.append(nb)
        n_comp += 1
    return n_comp, labels


def test_lineage_groups_are_the_connected_components():
    rng = np.random.default_rng(3)
    n = 500
    pairs = rng.integers(0, n, size=(300, 2))
    labels = lineage_labels(n, pairs)
    n_comp, ref = flood_fill_components(n, pairs)
    assert labels.max() + 1 == n_comp
    # same partition: a bijection between labels
    assert len(set(zip(labels, ref, strict=True))) == n_comp
    # groups are numbered by their first member
    firsts = [np.flatnonzero(labels == g)[0] for g in range(n_comp)]
    assert firsts == sorted(firsts)


# --------------------------------------------------------------------------- splits

def test_grouped_splits_hit_the_fractions_and_keep_strata_in_every_split():
    rng = np.random.default_rng(11)
    n = 3000
    strata = rng.integers(0, 5, n)
    sizes = rng.integers(1, 4, n)
    fractions = np.array([0.75, 0.10, 0.15])
    out = assign_group_splits(strata, sizes, fractions, seed=42)
    got = np.bincount(out, weights=sizes, minlength=3) / sizes.sum()
    np.testing.assert_allclose(got, fractions, atol=0.01)
    for s in range(5):
        assert set(out[strata == s]) == {0, 1, 2}
    np.testing.assert_array_equal(out, assign_group_splits(strata, sizes, fractions, seed=42))
    assert np.any(out != assign_group_splits(strata, sizes, fractions, seed=43))


@pytest.mark.parametrize("seed", range(5))
def test_small_rare_strata_reach_every_split(seed):
    strata = np.array([0] * 400 + [1] * 4 + [2] * 3 + [3] * 2)
    sizes = np.ones(len(strata), dtype=int)
    out = assign_group_splits(strata, sizes, np.array([0.75, 0.10, 0.15]), seed)
    assert set(out[strata == 1]) == {0, 1, 2} and set(out[strata == 2]) == {0, 1, 2}
    got = np.bincount(out, minlength=3) / len(out)
    np.testing.assert_allclose(got, [0.75, 0.10, 0.15], atol=0.01)
    # an empty split (fraction 0) is never used, even to spread a stratum
    out0 = assign_group_splits(strata, sizes, np.array([0.8, 0.0, 0.2]), seed)
    assert 1 not in set(out0) and set(out0[strata == 1]) == {0, 2}


def test_split_fractions_must_sum_to_one():
    with pytest.raises(SimBridgeConfigError, match="sum to 1"):
        split_fractions({"fractions": {"train": 0.8, "validation": 0.1, "test": 0.2}})


def make_plan_and_lineage(n_groups: int, rng: np.random.Generator):
    rows, lineage = [], []
    sub = {99: 0, 91: 0}
    for g in range(n_groups):
        members = [(99, sub[99])] + [(91, sub[91] + k) for k in range(rng.integers(0, 3))]
        sub[99] += 1
        sub[91] += len(members) - 1
        fex = rng.uniform()
        for snap, sid in members:
            rows.append({"snapshot": snap, "subhalo_id": sid, "n_views": 2,
                         "exsitu_fraction_global": fex})
            lineage.append({"snapshot": snap, "subhalo_id": sid, "lineage_group": g})
    return pd.DataFrame(rows), pd.DataFrame(lineage)


def test_make_splits_never_separates_a_lineage_group():
    plan, lineage = make_plan_and_lineage(200, np.random.default_rng(0))
    cfg = {"fractions": {"train": 0.75, "validation": 0.10, "test": 0.15}}
    df = make_splits(plan, lineage, cfg, EDGES.tolist(), seed=1)
    assert len(df) == len(plan)
    assert (df.groupby("lineage_group")["split"].nunique() == 1).all()
    assert set(df["split"]) == set(SPLITS)


def test_too_few_groups_for_the_splits_is_a_clear_error():
    plan, lineage = make_plan_and_lineage(2, np.random.default_rng(0))
    cfg = {"fractions": {"train": 0.75, "validation": 0.10, "test": 0.15}}
    with pytest.raises(SimBridgeConfigError, match="got no galaxy"):
        make_splits(plan, lineage, cfg, EDGES.tolist(), seed=1)


# --------------------------------------------------------------------------- leakage

def clean_samples() -> tuple[pd.DataFrame, pd.DataFrame]:
    samples = pd.DataFrame({
        "split": ["train"] * 4 + ["test"] * 2,
        "snapshot": [99, 99, 91, 91, 99, 99],
        "subhalo_id": [0, 0, 5, 5, 1, 1],
        "lineage_group": [0, 0, 0, 0, 1, 1],
    })
    links = pd.DataFrame({"snapshot": [91], "subhalo_id": [5], "descendant_snapshot": [99],
                          "descendant_subhalo_id": [0], "shared_star_fraction": [1.0],
                          "method": ["particle_ids"]})
    return samples, links


def test_leakage_check_passes_a_clean_dataset():
    samples, links = clean_samples()
    assert find_leaks(samples, links) == []


def test_leakage_check_catches_a_progenitor_in_another_split():
    samples, links = clean_samples()
    samples.loc[samples["subhalo_id"] == 5, ["split", "lineage_group"]] = ["test", 7]
    problems = find_leaks(samples, links)
    assert len(problems) == 1
    assert "subhalo 5 of snapshot 91 (test)" in problems[0] and "(train)" in problems[0]


def test_leakage_check_catches_views_of_one_galaxy_in_two_splits():
    samples, links = clean_samples()
    samples.loc[0, "split"] = "validation"
    problems = find_leaks(samples, links)
    assert any("subhalo 0 of snapshot 99 is in splits ['train', 'validation']" in p
               for p in problems)
    assert any("lineage group 0" in p for p in problems)


def test_split_assignment_is_gated_by_the_links(tmp_path):
    """A link that the lineage table missed stops the split before any file is written."""
    from simbridge.dataset.splits import DatasetLeakageError, write_splits

    plan, lineage = make_plan_and_lineage(60, np.random.default_rng(2))
    plan.assign(status="measured").to_csv(tmp_path / "plan.csv", index=False)
    lineage.to_csv(tmp_path / "lineage.csv", index=False)
    cfg = {"fractions": {"train": 0.75, "validation": 0.10, "test": 0.15}}
    df = write_splits(tmp_path / "plan.csv", tmp_path / "lineage.csv", cfg, EDGES.tolist(), 1,
                      tmp_path / "splits.csv")
    a = df[df["split"] == "train"].iloc[0]
    b = df[df["split"] == "test"].iloc[0]
    links = pd.DataFrame({"snapshot": [a.snapshot], "subhalo_id": [a.subhalo_id],
                          "descendant_snapshot": [b.snapshot],
                          "descendant_subhalo_id": [b.subhalo_id],
                          "shared_star_fraction": [0.5], "method": ["particle_ids"]})
    links.to_csv(tmp_path / "links.csv", index=False)
    (tmp_path / "splits.csv").unlink()
    with pytest.raises(DatasetLeakageError, match="leak"):
        write_splits(tmp_path / "plan.csv", tmp_path / "lineage.csv", cfg, EDGES.tolist(), 1,
                     tmp_path / "splits.csv", links_csv=tmp_path / "links.csv")
    assert not (tmp_path / "splits.csv").exists()

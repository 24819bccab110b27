"""The abundances branch through Snakemake: a tiny end-to-end run, the disjointness check
failing a run, and a misspelt key stopping one before anything runs."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from tests.conftest import small_config
from tests.test_workflow import run_with_config as run

AB = "results/nihao/abundances"


def abundances_config() -> dict:
    """The demo config shrunk to seconds: 8 dwarfs, N_sub 2..4, two-epoch estimators."""
    cfg = small_config()
    cfg["branches"] = ["abundances"]
    cfg["nihao"]["demo"].update(n_simulations=8, n_star_particles=150,
                                snapshot_steps=[256, 448, 640, 832, 1024])
    sup = cfg["abundances"]["superposition"]
    sup.update(n_sub_range=[2, 4], sets_per_n_sub={"train": 40, "validation": 10, "test": 10})
    inf = cfg["abundances"]["inference"]
    inf.update(max_epochs=2, stop_after_epochs=2, ensemble_size=2, step2_max_rows=200,
               embedding_channels=[4], summary_dim=8, hidden_features=16, num_transforms=1)
    inf["classifier"].update(channels=[4], epochs=2)
    inf["tuning"].update(n_workers=2, trials_per_worker=1, max_epochs=1, max_train_samples=100,
                         batch_sizes=[32], summary_dims=[8], hidden_features_range=[8, 16])
    inf["evaluation"].update(n_posterior_samples=20, n_sbc=30)
    return cfg




def test_a_misspelt_abundances_key_stops_the_run_before_anything_runs(tmp_path):
    cfg = abundances_config()
    cfg["abundances"]["superposition"]["n_sub_rnage"] = [2, 5]
    proc = run(tmp_path, cfg, "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "n_sub_rnage" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_the_disjointness_check_fails_the_run_and_removes_the_splits(tmp_path):
    cfg = abundances_config()
    run(tmp_path, cfg, "--cores", "2", "abundances_dataset")
    split = {s: tmp_path / f"{AB}/dataset/{s}.h5" for s in ("train", "validation", "test")}
    with h5py.File(split["train"]) as h5:
        train_block = int(h5["members"][0, 0])
    with h5py.File(split["test"], "a") as h5:
        members = h5["members"][...]
        members[0, 0] = train_block  # a training galaxy inside a test halo
        h5["members"][...] = members
    proc = run(tmp_path, cfg, "--cores", "1", "--forcerun", "check_abundance_disjointness",
               "--", "abundances_dataset", check=False)
    assert proc.returncode != 0
    assert "galaxies in both train and test" in proc.stderr + proc.stdout
    assert not any(p.exists() for p in split.values())
    assert not (tmp_path / f"{AB}/dataset/disjointness_check.json").exists()


@pytest.mark.slow
def test_the_branch_runs_end_to_end_with_its_report(tmp_path):
    cfg = abundances_config()
    run(tmp_path, cfg, "--cores", "2")
    run(tmp_path, cfg, "--report", "results/report.html")
    blocks = pd.read_csv(tmp_path / f"{AB}/building_blocks.csv")
    errors = pd.read_csv(tmp_path / f"{AB}/errors.csv", keep_default_na=False)
    summary = json.loads((tmp_path / "results/nihao/demo_suite.summary.json").read_text())
    assert len(blocks) + len(errors) == summary["n_snapshots"]
    assert "no halo catalogue" in set(errors["reason"])
    with h5py.File(tmp_path / f"{AB}/building_blocks.h5") as h5:
        assert h5["histograms"].shape == (len(blocks), 64, 64)
        assert h5["feh_edges"].shape == (65,)
    check = json.loads((tmp_path / f"{AB}/dataset/disjointness_check.json").read_text())
    assert check["status"] == "passed" and check["rule"] == "galaxies"
    metrics = json.loads((tmp_path / f"{AB}/models/evaluation/metrics.json").read_text())
    assert set(metrics["step1"]["methods"]) == {"npe_rounded", "classifier", "mnpe_discrete"}
    for scores in metrics["step1"]["methods"].values():
        assert 0 <= scores["accuracy"] <= 1
        assert np.sum(scores["confusion_matrix"]) == metrics["step1"]["n_test"] == 30
    step2 = metrics["step2"]
    assert step2["ensemble_size"] == 2 and len(step2["tarp"]["ecp"]) == len(step2["tarp"]["alpha"])
    assert np.array(step2["sbc"]["ranks"]).shape == (step2["n_rows"], 3)
    assert len(metrics["tuning"]["trials"]) == 2  # one trial from each of the two workers
    for fig in ("posterior_vs_truth", "calibration", "nsub", "tuning"):
        assert (tmp_path / f"{AB}/models/evaluation/{fig}.png").stat().st_size > 5_000
    assert (tmp_path / f"{AB}/figures/abundance_planes.png").stat().st_size > 5_000
    report = (tmp_path / "results/report.html").read_text(errors="replace")
    assert "Abundances" in report
    assert not list((tmp_path / "results").rglob("*.partial"))

"""The dm2gal branch through Snakemake: a tiny end-to-end run of its whole DAG and the
run-level split check failing a run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import small_config
from tests.test_workflow import run_with_config as run

D = "results/camels/dm2gal"


def dm2gal_config() -> dict:
    """The demo config shrunk to seconds: 5 runs of 16^3 particles, 16^3 grids, 1-2 epochs."""
    cfg = small_config()
    cfg["branches"] = ["dm2gal"]
    cfg["camels"]["demo"].update(n_runs=5, particles_per_side=16, pm_steps=4,
                                 min_group_particles=8)
    cfg["dm2gal"].update(grid=16, subbox_size=8, padding=4)
    cfg["dm2gal"]["model"].update(channels=[4, 8], inception_channels=[3], epochs=2,
                                  batch_size=4)
    return cfg




@pytest.mark.slow
def test_the_dm2gal_branch_runs_end_to_end_and_the_split_check_guards_it(tmp_path):
    cfg = dm2gal_config()
    run(tmp_path, cfg, "--cores", "2")
    metrics = json.loads((tmp_path / f"{D}/evaluation/metrics.json").read_text())
    assert set(metrics["goals"]) == {"phase1_recall", "phase1_accuracy", "pk_within_tolerance",
                                     "pk_closer_than_hod"}
    for goal in metrics["goals"].values():
        assert goal["met"] == (goal["missed_by"] == 0.0)
    assert set(metrics["classifiers"]) == {"r2unet", "inception"}
    splits = metrics["splits"]
    assert not set(splits["train"]) & set(splits["test"])
    assert splits["cross_prediction"][0] in splits["test"]
    for fig in ("training_curves", "precision_recall", "power_spectra", "slices"):
        assert (tmp_path / f"{D}/figures/{fig}.png").stat().st_size > 0
    check = json.loads((tmp_path / f"{D}/dataset/split_check.json").read_text())
    assert check["passed"] and check["n_files"] == 5
    # a run in two splits stops the workflow at the check
    split_file = tmp_path / f"{D}/dataset/splits.json"
    leaky = json.loads(split_file.read_text())
    leaky["test"].append(leaky["train"][0])
    split_file.write_text(json.dumps(leaky))
    proc = run(tmp_path, cfg, "--cores", "1", "--forcerun", "check_dm2gal_splits", "--",
               f"{D}/dataset/split_check.json", check=False)
    assert proc.returncode != 0
    assert "lies in both the train and the test split" in proc.stdout + proc.stderr

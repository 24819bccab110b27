"""The realism branch's DAG end to end on a tiny configuration."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_realism_config() -> dict:
    """The demo config with only the realism branch, shrunk to seconds per job."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["branches"] = ["realism"]
    r = cfg["realism"]
    r["observed"]["demo"] = {"n_galaxies": 30}
    r["simulations"] = [{"name": "twin", "demo": {"n_galaxies": 8}},
                        {"name": "lowres", "demo": {"n_galaxies": 8,
                                                    "star_particle_mass_msun": 1e8}}]
    r["demo_universe"]["star_particle_mass_msun"] = 2e7
    r["fit_simulations"] = False
    r["n_empty_sky"] = 6
    r["pixelcnn"].update({"channels": 4, "n_blocks": 1, "n_mixtures": 2, "epochs": 2})
    r["evaluation"].update({"n_bootstrap": 50, "n_trend_bins": 2})
    return cfg


@pytest.mark.slow
def test_realism_dag_end_to_end(tmp_path):
    from tests.test_workflow import planned_jobs, run_snakemake, write_config

    cfg = tiny_realism_config()
    write_config(tmp_path, cfg)
    run_snakemake(tmp_path, "--cores", "2")
    res = tmp_path / "results" / "realism"
    metrics = json.loads((res / "evaluation" / "metrics.json").read_text())
    obs = pd.read_csv(res / "images" / "observed.csv", keep_default_na=False, na_values=[""])
    kept = obs[obs["row"] >= 0]
    assert set(kept["split"]) == {"train", "validation", "test"}
    assert metrics["n_images"]["observed_test"] == int((kept["split"] == "test").sum())
    assert set(metrics["main"]["ranking"]) == {"twin", "lowres"}
    assert "scores_highest" in metrics["main"]["closest_check"]
    assert set(metrics["models"]) == {"pooled", "observed", "archetype", "pooled_norot",
                                      "observed_norot", "archetype_norot"}
    assert metrics["models"]["observed"]["augment"] and not metrics["models"][
        "observed_norot"]["augment"]
    # both models of a pair are fine-tuned from the shared (pooled) initialisation
    assert all(metrics["models"][m]["fine_tuned_from_shared_init"]
               for m in ("observed", "archetype", "observed_norot", "archetype_norot"))
    assert not metrics["models"]["pooled"]["fine_tuned_from_shared_init"]
    assert "empty_sky_over_galaxy_spread" in metrics["main"]
    # per-pixel LLR maps add up to the per-image LLR
    with h5py.File(res / "evaluation" / "scores.h5") as fh:
        g = fh["main/twin"]
        assert np.allclose(g["llr_map"][...].sum(axis=(1, 2)), g["llr"][...], atol=0.05)
        assert g["model_input"].shape[1:] == (32, 32)
    # archetypes: one per kept observed image, same split, same PSF
    arch = pd.read_csv(res / "images" / "archetype.csv", keep_default_na=False, na_values=[""])
    assert len(arch) == len(kept)
    assert np.allclose(arch["psf_fwhm_arcsec"], kept.sort_values("row")["psf_fwhm_arcsec"])
    for fig in ("llr_distributions", "llr_trends", "llr_maps", "training_curves"):
        assert (res / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    # nothing to redo; a pixelcnn setting retrains the models only
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n").stdout
    cfg["realism"]["pixelcnn"]["epochs"] = 3
    write_config(tmp_path, cfg)
    jobs = planned_jobs(run_snakemake(tmp_path, "-n"))
    assert jobs.get("train_realism_model") == 6  # the pooled models and their fine-tunes
    assert "realism_mocks" not in jobs and "realism_universe" not in jobs

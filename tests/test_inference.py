"""Inference on new galaxies: a tiny trained model applied to a split-layout file and to a file
assembled by hand, bad inputs, out-of-distribution flags, reproducibility and the `infer` target."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("zuko")

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError  # noqa: E402
from simbridge.extract.maps import MAP_CHANNELS, MAP_UNITS  # noqa: E402
from simbridge.models.exsitu import train_cvae, train_flow  # noqa: E402
from simbridge.models.inference import (  # noqa: E402
    check_inference_file,
    infer_posterior,
    plot_inference,
)
from simbridge.models.naming import inference_inputs, inference_model  # noqa: E402
from tests.conftest import small_config  # noqa: E402
from tests.test_workflow import planned_jobs, run_snakemake, write_config  # noqa: E402
from tests.toy_splits import toy_settings, write_toy_split  # noqa: E402

UNITS = [MAP_UNITS[c] for c in MAP_CHANNELS]
SETTINGS = {"seed": 3, "model": "z3_beta7e-05", "n_draws": 12, "quantiles": [0.16, 0.5, 0.84],
            "pixel_outlier_sigma": 5.0, "ood_quantile": 0.999}


def _with_layout_attrs(path: Path) -> Path:
    """A toy split with what the workflow's split files carry: channel attrs and pixel sizes."""
    with h5py.File(path, "a") as h5:
        h5["conditions"].attrs["channels"] = list(MAP_CHANNELS)
        h5["conditions"].attrs["channel_units"] = UNITS
        h5.create_dataset("pixel_size_kpc", data=np.full(h5["conditions"].shape[0], 0.5))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> dict[str, Path]:
    """A cVAE and flow trained for a few epochs on a toy split (seconds on a CPU)."""
    tmp = tmp_path_factory.mktemp("tiny_model")
    train = _with_layout_attrs(write_toy_split(tmp / "train.h5", 48, seed=1))
    val = write_toy_split(tmp / "validation.h5", 12, seed=2)
    settings = toy_settings(epochs=2)
    train_cvae(train, val, settings, tmp / "cvae.pt", tmp / "h.csv", None, tmp / "ck",
               device="cpu")
    train_flow(tmp / "cvae.pt", train, val, settings, tmp / "flow.pt", tmp / "fh.csv", None,
               tmp / "fk", device="cpu")
    return {"cvae": tmp / "cvae.pt", "flow": tmp / "flow.pt", "train": train}


def _hand_file(path: Path, n: int = 3, npix: int = 16, seed: int = 20, **override) -> Path:
    """Condition maps assembled with h5py alone, in the documented layout, no ex-situ map."""
    toy = write_toy_split(path.with_name("source_" + path.name), n, npix=npix, seed=seed)
    with h5py.File(toy) as src:
        cond, mask = src["conditions"][:], src["galaxy_mask"][:]
    cond = override.get("conditions", cond)
    with h5py.File(path, "w") as h5:
        c = h5.create_dataset("conditions", data=cond)
        c.attrs["channels"] = override.get("channels", list(MAP_CHANNELS))
        c.attrs["channel_units"] = override.get("channel_units", UNITS)
        h5.create_dataset("galaxy_mask", data=override.get("galaxy_mask", mask))
        h5.create_dataset("pixel_size_kpc", data=np.full(len(cond), 0.8))
    return path


def _infer(model: dict[str, Path], input_h5: Path, out: Path, settings: dict | None = None):
    return infer_posterior(model["cvae"], model["flow"], model["train"], input_h5,
                           settings or SETTINGS, out / "posterior.h5", out / "summary.json",
                           device="cpu", batch_size=2)


def test_inference_on_a_hand_assembled_file_writes_consistent_posteriors(tiny_model, tmp_path):
    src = _hand_file(tmp_path / "new.h5", n=3)
    summary = _infer(tiny_model, src, tmp_path / "out")
    with h5py.File(src) as h5:
        mask = h5["galaxy_mask"][:].astype(bool)
    with h5py.File(tmp_path / "out/posterior.h5") as post:
        kinds = list(post.attrs["kinds"])
        assert kinds == ["mean_map", "predictive"]  # posterior_draws has `predictive`
        for kind in kinds:
            draws = post[f"{kind}/draws"][:]
            assert draws.shape == (3, 12, 16, 16)
            inside = draws.transpose(1, 0, 2, 3)[:, mask]  # (n_draws, galaxy pixels)
            assert np.isfinite(inside).all() and inside.min() >= 0 and inside.max() <= 1
            assert np.isnan(draws.transpose(1, 0, 2, 3)[:, ~mask]).all()
            # the summaries are those of the draws written beside them
            np.testing.assert_allclose(post[f"{kind}/mean"][:], draws.mean(1), rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(post[f"{kind}/std"][:], draws.std(1), rtol=1e-4,
                                       atol=1e-6)
            q = np.quantile(draws, [0.16, 0.5, 0.84], axis=1, method="weibull")
            np.testing.assert_allclose(post[f"{kind}/quantiles"][:], np.moveaxis(q, 0, 1),
                                       rtol=1e-5, atol=1e-6)
            assert list(post[f"{kind}/quantiles"].attrs["quantiles"]) == [0.16, 0.5, 0.84]
        # draws of the pixel likelihood spread more than decoded means of the same posterior
        assert post["predictive/std"][:][mask].mean() > post["mean_map/std"][:][mask].mean()
        assert "mean_abs_residual" not in post  # no ex-situ map in the input
        assert post.attrs["model"] == "z3_beta7e-05" and post.attrs["seed"] == 3
        assert post.attrs["input_file"] == str(src)
        prov = dict(post["provenance"].attrs)
        assert len(prov["config_sha256"]) == 64 and str(src) in list(prov["input_files"])
        np.testing.assert_array_equal(post["galaxy_mask"][:], mask)
    saved = json.loads((tmp_path / "out/summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["n_galaxies"] == 3 and len(saved["galaxies"]) == 3
    assert saved["config_sha256"] == prov["config_sha256"]
    figures = plot_inference(src, tmp_path / "out/posterior.h5", tmp_path / "out/figures", 2)
    assert [f.name for f in figures] == ["galaxy_00000.png", "galaxy_00001.png"]
    assert all(f.stat().st_size > 5_000 for f in figures)
    assert sorted(p.name for p in (tmp_path / "out/figures").iterdir()) == \
        ["galaxy_00000.png", "galaxy_00001.png"]


def test_inference_on_a_split_file_records_residuals_against_its_maps(tiny_model, tmp_path):
    split = _with_layout_attrs(write_toy_split(tmp_path / "test.h5", 5, seed=30))
    _infer(tiny_model, split, tmp_path / "out")
    with h5py.File(split) as h5, h5py.File(tmp_path / "out/posterior.h5") as post:
        truth, mask = h5["exsitu_fraction_map"][:], h5["galaxy_mask"][:].astype(bool)
        mean = post["mean_map/mean"][:]
        expected = [np.abs(mean[i] - truth[i])[mask[i]].mean() for i in range(5)]
        np.testing.assert_allclose(post["mean_abs_residual"][:], expected, rtol=1e-5)
        np.testing.assert_array_equal(post["subhalo_id"][:], h5["subhalo_id"][:])


def test_same_seed_gives_the_same_posterior_and_another_seed_other_draws(tiny_model, tmp_path):
    src = _hand_file(tmp_path / "new.h5", n=2)
    _infer(tiny_model, src, tmp_path / "a")
    _infer(tiny_model, src, tmp_path / "b")
    _infer(tiny_model, src, tmp_path / "c", {**SETTINGS, "seed": 4})
    with h5py.File(tmp_path / "a/posterior.h5") as a, h5py.File(tmp_path / "b/posterior.h5") as b, \
            h5py.File(tmp_path / "c/posterior.h5") as c:
        for key in ("mean_map/draws", "predictive/draws", "predictive/quantiles"):
            np.testing.assert_array_equal(a[key][:], b[key][:])
        assert not np.array_equal(np.nan_to_num(a["predictive/draws"][:]),
                                  np.nan_to_num(c["predictive/draws"][:]))


def test_galaxies_far_outside_the_training_conditions_are_flagged(tiny_model, tmp_path, caplog):
    # the training split itself lies within its own distribution: nothing is flagged
    summary = _infer(tiny_model, tiny_model["train"], tmp_path / "train")
    assert summary["n_out_of_distribution"] == 0
    with h5py.File(write_toy_split(tmp_path / "src.h5", 3, seed=40)) as h5:
        cond = h5["conditions"][:]
    cond[1, 0] *= 1e6  # galaxy 1: a surface density six dex above anything in training
    src = _hand_file(tmp_path / "new.h5", n=3, seed=40, conditions=cond)
    with caplog.at_level(logging.WARNING, logger="simbridge.models.inference"):
        summary = _infer(tiny_model, src, tmp_path / "out")
    flagged = [g["index"] for g in summary["galaxies"] if g["out_of_distribution"]]
    assert flagged == [1]
    assert "beyond 5 sigma" in summary["galaxies"][1]["warnings"][0]
    assert summary["galaxies"][1]["pixel_outlier_fraction"] > 0.5
    assert "new.h5, galaxy 1: out of the training distribution" in caplog.text
    with h5py.File(tmp_path / "out/posterior.h5") as post:
        assert post["out_of_distribution"][:].tolist() == [0, 1, 0]
        assert post["pixel_outlier_fraction"].attrs["threshold"] == \
            summary["thresholds"]["pixel_outlier_fraction"]
        assert np.isfinite(post["predictive/mean"][1][post["galaxy_mask"][1].astype(bool)]).all()


def _damaged(tmp_path: Path, damage: str) -> Path:
    path = tmp_path / "new.h5"
    if damage == "npix":
        return _hand_file(path, npix=32)
    if damage == "channels":
        with h5py.File(write_toy_split(tmp_path / "s.h5", 2, seed=5)) as h5:
            cond = h5["conditions"][:, :4]
        return _hand_file(path, n=2, conditions=cond, channels=list(MAP_CHANNELS[:4]),
                          channel_units=UNITS[:4])
    if damage == "channel_names":
        return _hand_file(path, channels=["a", "b", "c", "d", "e"])
    if damage == "units":
        return _hand_file(path, channel_units=[*UNITS[:3], "yr", UNITS[4]])
    if damage == "no_units_attr":
        _hand_file(path)
        with h5py.File(path, "a") as h5:
            del h5["conditions"].attrs["channel_units"]
        return path
    if damage == "nan_in_mask":
        _hand_file(path)
        with h5py.File(path, "a") as h5:
            m = h5["galaxy_mask"][1].astype(bool)
            iy, ix = np.argwhere(m)[0]
            h5["conditions"][1, 3, iy, ix] = np.nan
        return path
    if damage == "no_pixel_size":
        _hand_file(path)
        with h5py.File(path, "a") as h5:
            del h5["pixel_size_kpc"]
        return path
    if damage == "not_hdf5":
        path.write_text("conditions,mask\n")
        return path
    return path  # missing


@pytest.mark.parametrize(
    ("damage", "message", "fix"),
    [
        ("npix", "maps have 32 x 32 pixels; model z3_beta7e-05 was trained on 16 x 16",
         "resample the maps to 16 x 16"),
        ("channels", "conditions hold 4 channels; model z3_beta7e-05 takes 5", "exactly these"),
        ("channel_names", "conditions.attrs['channels'] is ['a'", "convert the maps"),
        ("units", "conditions.attrs['channel_units'] is", "convert the maps"),
        ("no_units_attr", "no attribute 'channel_units'", "set conditions.attrs"),
        ("nan_in_mask", "NaN or inf inside the galaxy mask (first: galaxy 1, channel 3",
         "fill those pixels"),
        ("no_pixel_size", "lacks the dataset(s) ['pixel_size_kpc']", "Applying a trained model"),
        ("not_hdf5", "cannot be opened as HDF5", "Applying a trained model"),
        ("missing", "inference input file is missing", "inference.input_files"),
    ],
)
def test_inputs_that_do_not_fit_the_model_get_clear_errors(tmp_path, damage, message, fix):
    path = _damaged(tmp_path, damage)
    with pytest.raises(SimBridgeInputError, match=re.escape(message)) as err:
        check_inference_file(path, 16, MAP_CHANNELS, UNITS, "z3_beta7e-05")
    assert str(path) in str(err.value) and fix in str(err.value)


def test_a_bad_input_stops_inference_before_anything_is_written(tiny_model, tmp_path):
    path = _damaged(tmp_path, "units")
    with pytest.raises(SimBridgeInputError, match="channel_units"):
        _infer(tiny_model, path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_nan_outside_the_galaxy_mask_is_ignored(tiny_model, tmp_path):
    path = _hand_file(tmp_path / "new.h5", n=2)
    with h5py.File(path, "a") as h5:
        m = h5["galaxy_mask"][0].astype(bool)
        iy, ix = np.argwhere(~m)[0]
        h5["conditions"][0, :, iy, ix] = np.nan
    summary = _infer(tiny_model, path, tmp_path / "out")
    assert summary["n_galaxies"] == 2
    with h5py.File(tmp_path / "out/posterior.h5") as post:
        assert np.isfinite(post["mean_map/mean"][0][m]).all()


def test_inference_config_names_files_and_model():
    cfg = small_config()
    assert inference_inputs(cfg) == {}
    cfg["exsitu_model"]["inference"]["input_files"] = ["a/obs_1.h5", "b/sim-2.hdf5"]
    assert inference_inputs(cfg) == {"obs_1": "a/obs_1.h5", "sim-2": "b/sim-2.hdf5"}
    cfg["exsitu_model"]["inference"]["input_files"] = ["a/x.h5", "b/x.h5"]
    with pytest.raises(SimBridgeConfigError, match="same name 'x'"):
        inference_inputs(cfg)
    cfg["exsitu_model"].update(latent_dims=[3, 6], betas=[7e-5])
    assert inference_model(cfg) == "z3_beta7e-05"  # null: the first of the sweep
    cfg["exsitu_model"]["inference"]["model"] = "z6_beta7e-05"
    assert inference_model(cfg) == "z6_beta7e-05"
    cfg["exsitu_model"]["inference"]["model"] = "z10_beta7e-05"
    with pytest.raises(SimBridgeConfigError, match=r"exsitu_model.inference.model.*z6_beta7e-05"):
        inference_model(cfg)


def test_infer_target_plans_one_job_per_listed_file_and_all_is_unchanged_without(tmp_path):
    cfg = small_config()
    write_config(tmp_path, cfg)
    assert "infer_exsitu_posterior" not in planned_jobs(run_snakemake(tmp_path, "-n"))
    proc = run_snakemake(tmp_path, "-n", "infer", check=False)
    assert proc.returncode != 0
    assert "exsitu_model.inference.input_files is empty" in proc.stdout + proc.stderr
    for name in ("obs_a.h5", "obs_b.h5"):
        _hand_file(tmp_path / name, n=1)
    cfg["exsitu_model"]["inference"]["input_files"] = ["obs_a.h5", "obs_b.h5"]
    write_config(tmp_path, cfg)
    jobs = planned_jobs(run_snakemake(tmp_path, "-n", "infer"))
    assert jobs["infer_exsitu_posterior"] == 2 and jobs["train_exsitu_flow"] == 1
    assert "evaluate_exsitu_model" not in jobs
    assert planned_jobs(run_snakemake(tmp_path, "-n"))["infer_exsitu_posterior"] == 2
    cfg["exsitu_model"]["inference"]["model"] = "z4_beta7e-05"  # not in the sweep
    write_config(tmp_path, cfg)
    proc = run_snakemake(tmp_path, "-n", "infer", check=False)
    assert proc.returncode != 0 and "exsitu_model.inference.model" in proc.stdout + proc.stderr
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())  # config left readable

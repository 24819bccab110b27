"""The Snakemake workflow end to end: lint, a demo run, bad config, kill and restart."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, small_config

SIM = "TNG-demo"
MAPS = f"results/tng/{SIM}/maps/tng_maps.h5"
MANIFEST = f"results/tng/{SIM}/maps/galaxy_manifest.csv"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def write_config(workdir: Path, cfg: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_snakemake_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_config_stops_before_anything_runs(tmp_path):
    cfg = small_config()
    cfg["maps"]["n_veiws"] = 3
    write_config(tmp_path, cfg)
    proc = run_snakemake(tmp_path, "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "n_veiws" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("demo_run")
    write_config(workdir, small_config())
    run_snakemake(workdir, "--cores", "2")
    run_snakemake(workdir, "--report", "results/report.html")
    return workdir


@pytest.mark.slow
def test_demo_run_writes_maps_manifest_and_report(demo_run):
    cfg = small_config()
    with h5py.File(demo_run / MAPS) as h5:
        n = h5["conditions"].shape[0]
        assert h5["conditions"].shape == (n, 5, 32, 32)
        assert h5["exsitu_fraction_map"].shape == (n, 32, 32)
        assert h5["conditions"].chunks == (1, 5, 32, 32)
        assert list(h5["conditions"].attrs["channel_units"])[1] == "km s^-1"
        assert h5["provenance"].attrs["seed"] == cfg["seed"]
        assert len(h5["provenance"].attrs["config_sha256"]) == 64
        snaps = set(h5["snapshot"][...].tolist())
        assert snaps == {99, 91}
        frac = h5["exsitu_fraction_map"][...]
        assert np.all((frac >= 0) & (frac <= 1))
        rot = h5["rotation"][...]
        eye = np.broadcast_to(np.eye(3), rot.shape)
        np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), eye, atol=1e-10)
    manifest = pd.read_csv(demo_run / MANIFEST, keep_default_na=False, na_values=[""])
    done = manifest[manifest["status"] == "extracted"]
    assert len(done) > 0
    assert (done["n_views"] == cfg["maps"]["n_views"]).all()
    assert done["n_views"].sum() == n
    skipped = manifest[manifest["status"] == "skipped"]
    assert (skipped["reason"].astype(str).str.len() > 0).all()
    report = (demo_run / "results/report.html")
    assert report.stat().st_size > 10_000
    for fig in ("example_maps.png", "exsitu_fraction_vs_mass.png"):
        assert (demo_run / f"results/tng/{SIM}/figures/{fig}").stat().st_size > 10_000
    assert not list((demo_run / "results").rglob("*.partial"))


@pytest.mark.slow
def test_same_config_gives_byte_identical_outputs(demo_run, tmp_path):
    write_config(tmp_path, small_config())
    run_snakemake(tmp_path, "--cores", "2", "merge_maps")
    for rel in (MAPS, MANIFEST, f"results/tng/{SIM}/catalog/snap_099.csv"):
        assert sha256(tmp_path / rel) == sha256(demo_run / rel), rel
    demo_files = sorted((demo_run / f"results/demo_universe/{SIM}").rglob("*.hdf5"))
    assert demo_files
    for path in demo_files:
        twin = tmp_path / path.relative_to(demo_run)
        assert sha256(twin) == sha256(path), path


@pytest.mark.slow
def test_changed_map_setting_reruns_maps_but_not_universe(demo_run, tmp_path):
    shutil.copytree(demo_run, tmp_path / "w")
    work = tmp_path / "w"
    write_config(work, small_config(npix=24))
    proc = run_snakemake(work, "-n", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    assert "extract_maps" in out and "merge_maps" in out
    assert "demo_universe" not in out


@pytest.mark.slow
def test_killed_run_restarts_without_corrupt_files(tmp_path):
    write_config(tmp_path, small_config())
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--cores", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    batches = tmp_path / f"results/tng/{SIM}/maps/batches"
    deadline = time.time() + 300
    while time.time() < deadline and not list(batches.rglob("batch_*.h5")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / MAPS).exists(), "the run finished before it could be killed"
    for h5file in (tmp_path / "results").rglob("*.h5"):
        with h5py.File(h5file) as h5:  # every file under its final name is complete
            assert "provenance" in h5
    run_snakemake(tmp_path, "--unlock")
    run_snakemake(tmp_path, "--cores", "2", "--rerun-incomplete")
    with h5py.File(tmp_path / MAPS) as h5:
        assert h5["conditions"].shape[0] > 0
    assert not list((tmp_path / "results").rglob("*.partial"))

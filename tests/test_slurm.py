"""The demo extraction through a real single-node SLURM cluster (slurm-wlm on localhost).

Needs root and the Debian packages slurm-wlm and munge (`.ci/run` installs them). Without them
the test skips, unless SIMBRIDGE_REQUIRE_SLURM=1, when it fails instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

from simbridge import paths
from tests import slurm_cluster
from tests.conftest import ROOT, TIMINGS, small_config

SIM = small_config()["tng"]["simulation_name"]
#: What Snakemake is asked to build: the extraction stage (its named target rule).
TARGETS = ["extraction"]
#: Rules that must have run as SLURM jobs.
SLURM_RULES = {"demo_universe", "select_galaxies", "measure_galaxies", "extract_maps"}
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
#: Memory per job in the test. The profile sizes jobs for TNG100 (up to 16 GB); demo jobs need
#: a few hundred MB, and with memory consumable (CR_Core_Memory) 16 GB jobs would run one at a
#: time on a 24 GB node and be rejected on a smaller one.
TEST_MEM_MB = 1000
SNAKEMAKE_TIMEOUT_S = 3 * 3600  # a hang guard (a busy machine must not fail it)
REQUIRE_SLURM = os.environ.get("SIMBRIDGE_REQUIRE_SLURM") == "1"

pytestmark = pytest.mark.slurm


def capped_set_resources(mem_mb: int) -> list[str]:
    """The profile's set-resources with mem_mb capped (a command-line --set-resources replaces
    the profile's whole mapping, so every entry is repeated)."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    return [f"{rule}:{key}={min(value, mem_mb) if key == 'mem_mb' else value}"
            for rule, resources in profile["set-resources"].items()
            for key, value in resources.items()]


def slurm_diagnostics() -> str:
    """squeue's view of all jobs, for failure messages."""
    proc = subprocess.run(["squeue", "--states=all", "--format=%i|%j|%T|%r|%m|%C"],
                          capture_output=True, text=True, timeout=30, check=False)
    return f"--- squeue:\n{proc.stdout}{proc.stderr}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[slurm_cluster.SlurmCluster]:
    reason = slurm_cluster.unavailable_reason()
    if reason and REQUIRE_SLURM:
        pytest.fail(f"SIMBRIDGE_REQUIRE_SLURM=1 but no SLURM test cluster possible: {reason}")
    if reason:
        pytest.skip(reason)
    with slurm_cluster.local_slurm_cluster(tmp_path_factory.mktemp("slurm_cluster")) as running:
        yield running
    assert not running.daemons_alive(), "teardown left SLURM daemons running"


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> tuple[Path, str, float]:
    """Workdir, Snakemake's output and wall time of the extraction run through SLURM."""
    workdir = tmp_path_factory.mktemp("slurm_run")
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config(), sort_keys=False))
    # Targets first: --set-resources takes every following word up to the next option.
    cmd = [sys.executable, "-m", "snakemake", *TARGETS,
           "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"),
           "--workflow-profile", str(PROFILE), "--executor", "slurm",
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--slurm-keep-successful-logs",
           "--set-resources", *capped_set_resources(TEST_MEM_MB)]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"snakemake on SLURM ran over {SNAKEMAKE_TIMEOUT_S} s\n"
                             f"{slurm_diagnostics()}\n{cluster.logs()}") from err
    wall_s = time.monotonic() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"snakemake on SLURM failed:\n{output[-6000:]}\n"
                             f"{slurm_diagnostics()}\n{cluster.logs()}")
    (workdir / "snakemake_output.txt").write_text(output)
    TIMINGS.append(f"demo extraction through a single-node SLURM cluster: {wall_s:.1f} s "
                   "wall time")
    return workdir, output, wall_s


def test_extraction_runs_through_slurm(slurm_run):
    workdir, output, _ = slurm_run
    cfg = small_config()
    n_samples = 0
    for snap in cfg["tng"]["snapshots"]:
        for batch in range(cfg["tng"]["n_batches"]):
            fmt = {"simulation": SIM, "snapshot": paths.snapshot_tag(snap),
                   "batch": paths.batch_tag(batch)}
            with h5py.File(workdir / paths.TNG_MAPS_BATCH.format(**fmt)) as h5:
                n_samples += h5["conditions"].shape[0]
            galaxies = pd.read_csv(workdir / paths.TNG_MAPS_BATCH_GALAXIES.format(**fmt))
            assert (galaxies["status"] == "extracted").any()
    assert n_samples > 0
    assert not (workdir / paths.TNG_SPLITS.format(simulation=SIM)).exists()  # stage only

    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert job_ids, f"no SLURM job ids in Snakemake's output:\n{output[-3000:]}"
    log_dir = workdir / ".snakemake" / "slurm_logs"
    logs = {p.stem: p for p in log_dir.rglob("*.log")}
    assert set(job_ids) <= logs.keys(), f"SLURM logs {sorted(logs)} for jobs {job_ids}"
    rules = {p.relative_to(log_dir).parts[0].removeprefix("rule_") for p in logs.values()}
    assert SLURM_RULES <= rules

    # slurmctld itself (MinJobAge keeps finished jobs) must know every job as completed.
    proc = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T",
                           "--jobs", ",".join(job_ids)],
                          capture_output=True, text=True, timeout=30, check=True)
    states = dict(line.split("|") for line in proc.stdout.split())
    assert states == dict.fromkeys(job_ids, "COMPLETED")

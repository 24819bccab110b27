"""A single-node SLURM cluster on localhost for tests (Debian slurm-wlm and munge, no systemd).

`local_slurm_cluster(workdir)` starts munged (if needed), slurmctld and slurmd with their state,
spool, pid and log files under `workdir`, waits until the node is idle, and stops what it
started on exit. It writes /etc/slurm/slurm.conf, the only path the jobs' inner `srun` finds
(the jobstep plugin strips SLURM_CONF), and refuses to overwrite one it did not write.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REQUIRED_BINARIES = (
    "slurmctld", "slurmd", "munged", "mungekey", "munge", "sbatch", "squeue", "sinfo", "srun",
    "scancel",
)
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# Written by SimBridge tests/slurm_cluster.py: safe to delete or overwrite."
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID_FILE = Path("/run/munge/munged.pid")
MUNGE_USER = "munge"


class SlurmClusterError(RuntimeError):
    """The local cluster could not be set up or did not come up."""


def _search_path() -> str:
    """PATH plus the sbin directories where Debian puts the daemons."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _bin(name: str) -> str:
    """Full path of a program (its bare name if it is not found)."""
    return shutil.which(name, path=_search_path()) or name


def missing_binaries() -> list[str]:
    """SLURM and munge programs that are not installed."""
    return [name for name in REQUIRED_BINARIES if shutil.which(name, path=_search_path()) is None]


def unavailable_reason() -> str | None:
    """Why a local cluster cannot be started here, or None when it can."""
    missing = missing_binaries()
    if missing:
        return (f"SLURM/munge binaries not installed ({', '.join(missing)}); "
                "apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged needs root"
    return None


def _run(cmd: list[str], timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    """Run a program (found by _bin), capture its output as text, never raise on a failure."""
    return subprocess.run([_bin(cmd[0]), *cmd[1:]], capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)


def _tail(path: Path, n_lines: int = 25) -> str:
    """Last lines of a log file (or a note that it is missing)."""
    if not path.exists():
        return f"[{path} does not exist]"
    lines = path.read_text(errors="replace").splitlines()[-n_lines:]
    return "\n".join(lines)


def _alive(pid_file: Path, name: str) -> int | None:
    """Pid from a pid file if that process runs and is `name` (not a recycled pid, not a zombie)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return None
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
    return pid if comm == name and state != "Z" else None


def stop_daemon(pid_file: Path, name: str, timeout: float = 15) -> None:
    """SIGTERM the daemon of a pid file, SIGKILL it if it outlives `timeout`."""
    pid = _alive(pid_file, name)
    if pid is None:
        return
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid_file, name) == pid:
        time.sleep(0.2)
    if _alive(pid_file, name) == pid:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def munge_is_running() -> bool:
    """Whether a munged answers on the default socket (a credential can be made)."""
    return _run(["munge", "-n"], timeout=10).returncode == 0


def start_munge() -> bool:
    """Create the munge key if missing and start munged as the munge user; True if we started it."""
    if munge_is_running():
        return False
    # munged refuses keys and directories that others can write or that the munge user lacks.
    for path, mode in ((MUNGE_KEY.parent, 0o700), (Path("/var/lib/munge"), 0o711),
                       (Path("/var/log/munge"), 0o700), (MUNGE_PID_FILE.parent, 0o755)):
        if not path.is_dir():
            path.mkdir(mode=mode, parents=True)
            shutil.chown(path, MUNGE_USER, MUNGE_USER)
    if not MUNGE_KEY.exists():
        proc = _run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)])
        if proc.returncode != 0:
            raise SlurmClusterError(f"mungekey failed: {proc.stderr.strip()}")
        shutil.chown(MUNGE_KEY, MUNGE_USER, MUNGE_USER)
        MUNGE_KEY.chmod(0o600)
    proc = _run(["munged"], user=MUNGE_USER, group=MUNGE_USER)  # daemonizes
    deadline = time.monotonic() + 10
    while not munge_is_running():
        if time.monotonic() > deadline:
            raise SlurmClusterError(
                f"munged did not start (exit {proc.returncode}): {proc.stderr.strip()}\n"
                f"{_tail(Path('/var/log/munge/munged.log'))}")
        time.sleep(0.2)
    return True


def node_definition() -> dict[str, str]:
    """NodeName, CPUs and RealMemory of this machine as `slurmd -C` reports them."""
    proc = _run(["slurmd", "-C"])
    fields = dict(item.split("=", 1) for item in proc.stdout.split() if "=" in item)
    if proc.returncode != 0 or not {"NodeName", "CPUs", "RealMemory"} <= fields.keys():
        raise SlurmClusterError(f"slurmd -C failed: {proc.stdout}{proc.stderr}")
    return fields


def _conf_value(text: str, key: str) -> str | None:
    """Value of `key=value` in a slurm.conf text."""
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip().lower() == key.lower():
            return value.strip()
    return None


def _stop_stale_cluster(conf: Path) -> None:
    """Stop daemons left running by an earlier cluster of ours (a crashed test run)."""
    text = conf.read_text()
    for key, name in (("SlurmdPidFile", "slurmd"), ("SlurmctldPidFile", "slurmctld")):
        pid_file = _conf_value(text, key)
        if pid_file:
            stop_daemon(Path(pid_file), name)


@dataclass
class SlurmCluster:
    """Paths of one local cluster; `start()` brings it up, `stop()` tears it down."""

    workdir: Path
    conf_path: Path = SLURM_CONF
    started_munge: bool = False
    node_name: str = ""

    @property
    def ctld_pid_file(self) -> Path:
        return self.workdir / "run" / "slurmctld.pid"

    @property
    def slurmd_pid_file(self) -> Path:
        return self.workdir / "run" / "slurmd.pid"

    @property
    def ctld_log(self) -> Path:
        return self.workdir / "log" / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.workdir / "log" / "slurmd.log"

    def conf_text(self, node: dict[str, str]) -> str:
        """slurm.conf for one node that is both controller and compute node."""
        state, spool = self.workdir / "state", self.workdir / "spool"
        host = node["NodeName"]
        return "\n".join([
            MARKER,
            "ClusterName=simbridge-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            f"StateSaveLocation={state}",
            f"SlurmdSpoolDir={spool}",
            f"SlurmctldPidFile={self.ctld_pid_file}",
            f"SlurmdPidFile={self.slurmd_pid_file}",
            f"SlurmctldLogFile={self.ctld_log}",
            f"SlurmdLogFile={self.slurmd_log}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            # Memory is a consumable resource, as on production clusters, so --mem is honoured.
            # The slurm profile sizes memory for TNG100 (up to 16 GB a job): the test lowers it
            # with --set-resources, otherwise 16 GB jobs would queue one at a time on a 24 GB
            # node and be rejected outright on a smaller one.
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",  # a job without --mem must not take the whole node's memory
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=600",  # squeue must still know finished jobs when Snakemake polls
            "MailProg=/bin/true",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={node['CPUs']} "
            f"RealMemory={node['RealMemory']} State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def write_conf(self) -> None:
        """Write slurm.conf at the default path, never over one that is not ours."""
        if self.conf_path.exists():
            if MARKER not in self.conf_path.read_text(errors="replace"):
                raise SlurmClusterError(
                    f"{self.conf_path} exists and was not written by tests/slurm_cluster.py; "
                    "refusing to overwrite a real SLURM configuration. Move it away to run "
                    "the SLURM test.")
            _stop_stale_cluster(self.conf_path)
        node = node_definition()
        self.node_name = node["NodeName"]
        for sub in ("state", "spool", "run", "log"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.conf_text(node))

    def logs(self) -> str:
        """Tails of the slurmctld and slurmd logs, for error messages."""
        return (f"--- slurmctld log ({self.ctld_log}):\n{_tail(self.ctld_log)}\n"
                f"--- slurmd log ({self.slurmd_log}):\n{_tail(self.slurmd_log)}")

    def node_state(self) -> str:
        """The node's state as sinfo prints it (e.g. idle, down*, drained)."""
        proc = _run(["sinfo", "--noheader", "--nodes", self.node_name, "--format", "%T"])
        return proc.stdout.strip() or proc.stderr.strip()

    def start(self, timeout: float = 60) -> None:
        """Start munged if needed, then slurmctld and slurmd; wait until the node is idle."""
        self.write_conf()
        self.started_munge = start_munge()
        for daemon in ("slurmctld", "slurmd"):
            proc = _run([daemon])  # both daemonize once their configuration has been read
            if proc.returncode != 0:
                raise SlurmClusterError(
                    f"{daemon} exited {proc.returncode}: {proc.stderr.strip()}\n{self.logs()}")
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state == "idle":
                return
            time.sleep(0.5)
        raise SlurmClusterError(
            f"node {self.node_name} not idle after {timeout:.0f} s (sinfo: {state!r})\n"
            f"{self.logs()}")

    def cancel_jobs(self, timeout: float = 15) -> None:
        """Cancel every job of this cluster (all are ours) and wait until none is running."""
        if _alive(self.ctld_pid_file, "slurmctld") is None:
            return
        _run(["scancel", "--user", "root"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = _run(["squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING"])
            if running.returncode != 0 or not running.stdout.strip():
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel jobs, stop slurmd, slurmctld (and munged if we started it), remove our conf."""
        self.cancel_jobs()
        stop_daemon(self.slurmd_pid_file, "slurmd")
        stop_daemon(self.ctld_pid_file, "slurmctld")
        if self.started_munge:
            stop_daemon(MUNGE_PID_FILE, "munged")
        if self.conf_path.exists() and MARKER in self.conf_path.read_text(errors="replace"):
            self.conf_path.unlink()

    def daemons_alive(self) -> list[str]:
        """Names of our daemons that are still running."""
        pid_files = {"slurmctld": self.ctld_pid_file, "slurmd": self.slurmd_pid_file}
        return [name for name, pid_file in pid_files.items() if _alive(pid_file, name)]


@contextmanager
def local_slurm_cluster(workdir: Path, timeout: float = 60) -> Iterator[SlurmCluster]:
    """A running single-node cluster for the duration of the `with` block."""
    cluster = SlurmCluster(workdir=Path(workdir))
    try:
        cluster.start(timeout=timeout)
        yield cluster
    finally:
        cluster.stop()

"""Writing outputs safely: temporary name, then an atomic rename; provenance records."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import pandas as pd

import simbridge
from simbridge.config import config_hash
from simbridge.errors import SimBridgeInputError


def partial_path(path: str | Path) -> Path:
    """The temporary name an output is written under before its rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only if the block succeeds.

    A killed job leaves at most the hidden ``.partial`` file, which the next attempt overwrites,
    so a final name never holds a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    if tmp.exists():
        tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV table written by SimBridge: only empty cells are missing values, so skip
    reasons and names such as "NA" or "None" stay text."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON under a temporary name and rename it."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_provenance(
    h5: h5py.File, config: dict[str, Any], seed: int, input_files: Sequence[str | Path]
) -> None:
    """Write the ``provenance`` group: config hash and text, package version, seed, inputs.

    Nothing time-dependent is written, so the same config gives byte-identical files.
    """
    group = h5.require_group("provenance")
    group.attrs["config_sha256"] = config_hash(config)
    group.attrs["config_json"] = json.dumps(config, sort_keys=True, default=str)
    group.attrs["simbridge_version"] = simbridge.__version__
    group.attrs["seed"] = int(seed)
    group.attrs["input_files"] = [str(p) for p in input_files]


@contextlib.contextmanager
def open_hdf5(path: str | Path, what: str, fix: str, missing_fix: str | None = None,
              required: Sequence[str] = ()) -> Iterator[h5py.File]:
    """Open an HDF5 file for reading; a missing, unreadable or incomplete file is a
    SimBridgeInputError naming the file and the fix.

    ``fix``: what a corrupt file needs (re-download an archive file, rerun the job that wrote a
    workflow file); ``missing_fix``: what a missing file needs (default: ``fix``);
    ``required``: datasets the file must hold.
    """
    path = Path(path)
    if not path.is_file():
        raise SimBridgeInputError(f"{what} is missing", path, missing_fix or fix)
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise SimBridgeInputError(f"{what} cannot be opened as HDF5 ({err})", path, fix) from None
    try:
        missing = [k for k in required if k not in fh]
        if missing:
            raise SimBridgeInputError(f"{what} lacks the dataset(s) {missing}", path, fix)
        yield fh
    finally:
        fh.close()

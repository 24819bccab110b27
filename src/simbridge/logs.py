"""Logging for workflow jobs: everything (progress bars included) goes to the rule's log file.

A few lines also reach the terminal of the user running ``snakemake`` (the job's real stderr):
SimBridge errors, a pointer to the log when the job fails on any other exception, and the
records of the :data:`PROGRESS_LOGGER` logger (e.g. one line per training epoch).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError

#: Records of this logger (and its children) go to the job's log and to the terminal.
PROGRESS_LOGGER = "simbridge.progress"


def progress_logger(name: str = "") -> logging.Logger:
    """A logger whose records inside :func:`job_logging` also reach the terminal."""
    return logging.getLogger(f"{PROGRESS_LOGGER}.{name}" if name else PROGRESS_LOGGER)


@contextlib.contextmanager
def job_logging(log_file: str | Path) -> Iterator[None]:
    """Send logging and stderr to ``log_file``; turn any error into a clean exit with status 1.

    A SimBridgeInputError or SimBridgeConfigError is written (message only: it names the file
    and the fix) to the log and to the terminal. Any other exception is written to the log
    with its full traceback, and the terminal gets one line naming it and the log. Progress
    records (:func:`progress_logger`) go to both.
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stderr
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    with log_file.open("w") as fh, contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(formatter)
        to_terminal = logging.StreamHandler(terminal)
        to_terminal.setFormatter(logging.Formatter("%(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        progress = logging.getLogger(PROGRESS_LOGGER)
        progress.addHandler(to_terminal)
        try:
            yield
        except (SimBridgeInputError, SimBridgeConfigError) as err:
            message = f"SimBridge error: {err}"
            print(message, file=fh)
            print(message, file=terminal)
            raise SystemExit(1) from None
        except Exception as err:  # noqa: BLE001 - any failure must reach the job's log
            traceback.print_exc(file=fh)
            fh.flush()
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            print(f"{type(err).__name__}: {first}\n  (unexpected error; full traceback in "
                  f"{log_file.resolve()})", file=terminal)
            raise SystemExit(1) from None
        finally:
            progress.removeHandler(to_terminal)
            root.removeHandler(handler)

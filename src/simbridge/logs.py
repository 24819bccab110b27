"""Logging for workflow jobs: everything (progress bars included) goes to the rule's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError


@contextlib.contextmanager
def job_logging(log_file: str | Path) -> Iterator[None]:
    """Send logging and stderr to ``log_file``; turn SimBridge input errors into a clean exit.

    A SimBridgeInputError or SimBridgeConfigError is written (message only: it names the file
    and the fix) to the log and to the terminal, and the job exits with status 1.
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stderr
    with log_file.open("w") as fh, contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except (SimBridgeInputError, SimBridgeConfigError) as err:
            message = f"SimBridge error: {err}"
            print(message, file=fh)
            print(message, file=terminal)
            raise SystemExit(1) from None
        finally:
            root.removeHandler(handler)

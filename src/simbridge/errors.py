"""Errors that SimBridge raises on bad input: each names the offending file or key and the fix."""

from __future__ import annotations


class SimBridgeInputError(RuntimeError):
    """Bad or missing input data; the message names the file and how to fix it."""

    def __init__(self, problem: str, path: object | None = None, fix: str | None = None):
        parts = [problem]
        if path is not None:
            parts.append(f"  file: {path}")
        if fix:
            parts.append(f"  fix:  {fix}")
        super().__init__("\n".join(parts))
        self.path = path
        self.fix = fix


class SimBridgeConfigError(ValueError):
    """A configuration that does not validate; the message names the key."""


def rebuild_fix(path: object, rule: str) -> str:
    """The fix for a corrupt file that the workflow wrote (not archive data): rebuild it."""
    return (f"this is an intermediate file of the workflow, not archive data: delete it "
            f"(rm {path}) and rerun snakemake, which rebuilds only that file, or recompute "
            f"every such file with snakemake --cores 2 --forcerun {rule}")

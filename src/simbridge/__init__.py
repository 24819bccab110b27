"""SimBridge: cosmological simulations to machine-learning datasets, as one Snakemake workflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("simbridge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

"""Rule check_dm2gal_splits: no run in two splits; every grid file's run in one split."""

import json

import h5py

from simbridge.dataset.subboxes import check_run_splits
from simbridge.io import write_json_atomic
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    splits = json.loads(open(sm.input.splits).read())
    sample_runs = {}
    for path in sm.input.grids:
        with h5py.File(path, "r") as fh:
            sample_runs[path] = str(fh.attrs["run"])
    write_json_atomic(sm.output[0], check_run_splits(splits, sample_runs))

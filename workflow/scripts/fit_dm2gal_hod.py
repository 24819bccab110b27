"""Rule fit_dm2gal_hod: the three-parameter HOD on the training runs' N-body halos."""

import json

from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.models.dm2gal.evaluate import fit_hod_on_runs

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    splits = json.loads(open(sm.input.splits).read())
    write_json_atomic(sm.output[0], fit_hod_on_runs(list(sm.input.grids), splits["train"]))

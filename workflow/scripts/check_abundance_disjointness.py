"""Rule check_abundance_disjointness: prove the splits' disjointness rule or fail the run.

On failure the split files are removed, so that nothing downstream trains on leaking splits.
"""

import contextlib
from pathlib import Path

from simbridge.dataset.superpose import check_disjointness
from simbridge.errors import SimBridgeInputError
from simbridge.io import write_json_atomic
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    files = {split: sm.input[split] for split in ("train", "validation", "test")}
    try:
        record = check_disjointness(files, sm.params.rule)
    except SimBridgeInputError:
        for path in files.values():
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()
        raise
    write_json_atomic(sm.output[0], record)

"""Rule generalization_regression: error against distance, held-out predictions, metrics."""

import json
from pathlib import Path

from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.models.generalization import study_metrics

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    distances = json.loads(Path(sm.input.distances).read_text())
    errors: dict[str, dict] = {}
    for path in sm.input.errors:
        entry = json.loads(Path(path).read_text())
        errors.setdefault(entry["model_kind"], {})[entry["model_domain"]] = entry
    metrics = study_metrics(distances, errors, sm.params.holdout, sm.params.regression,
                            int(sm.params.seed))
    write_json_atomic(sm.output[0], metrics)

"""Rule camels_demo_suite: write the paired CAMELS-format demo suite (N-body + hydro twins)."""

from pathlib import Path

from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.sims.camels_demo import generate_demo_suite

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    summary = generate_demo_suite(Path(sm.output.suite), sm.params.demo, sm.params.seed,
                                  sm.params.suite, workers=sm.threads)
    write_json_atomic(sm.output.summary, summary)

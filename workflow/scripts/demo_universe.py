"""Rule demo_universe: write the synthetic TNG-layout simulation."""

from pathlib import Path

from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.sims.tng_demo import generate_demo_universe

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    summary = generate_demo_universe(Path(sm.output.sim_dir), sm.params.demo, sm.params.seed)
    write_json_atomic(sm.output.summary, summary)

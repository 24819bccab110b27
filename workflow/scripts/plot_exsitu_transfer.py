"""Rule plot_exsitu_transfer: error against distance of one ex-situ model on other universes."""

import json
from pathlib import Path

from simbridge.logs import job_logging
from simbridge.report.generalization_figures import plot_exsitu_transfer

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    plot_exsitu_transfer(json.loads(Path(sm.input.metrics).read_text()), sm.output.figure)

"""Rule assign_splits: split of every galaxy, grouped by lineage."""

from simbridge.dataset.splits import write_splits
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    write_splits(sm.input.plan, sm.input.lineage, sm.params.splits, sm.params.bins,
                 sm.params.seed, sm.output[0], links_csv=sm.input.links)

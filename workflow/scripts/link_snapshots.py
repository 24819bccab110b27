"""Rule link_snapshots: lineage groups across snapshots."""

from simbridge.dataset.lineage import write_lineage
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    write_lineage(sm.params.base_path, sm.input.catalogs, sm.params.splits,
                  sm.config["tng"]["max_read_gap_particles"],
                  sm.output.lineage, sm.output.links)

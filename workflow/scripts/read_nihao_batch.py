"""Rule read_nihao_batch: read one share of the NIHAO snapshots through pynbody."""

from simbridge.extract.abundances import read_batch
from simbridge.logs import job_logging
from simbridge.sims.nihao import list_snapshots

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    settings = sm.params.settings
    snapshots = list_snapshots(sm.params.base_path, settings["nihao"]["galaxies"])
    batch, n_batches = int(sm.wildcards.batch), settings["nihao"]["n_batches"]
    read_batch(snapshots[batch::n_batches], settings, sm.output.stars, sm.output.errors)

"""Rule realism_empty_sky: the empty-sky control set."""

from simbridge.dataset.realism import build_empty_sky_set
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    build_empty_sky_set(int(sm.params.n), sm.params.mocks, int(sm.params.seed), sm.output.images,
                        sm.output.manifest, dict(sm.config), sm.params.sky_cutouts_dir)

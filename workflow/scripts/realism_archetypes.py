"""Rule realism_archetypes: Sersic archetypes of the observed set."""

from simbridge.dataset.realism import build_archetype_set
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    build_archetype_set(sm.input.images, sm.input.manifest, sm.params.mocks, int(sm.params.seed),
                        sm.output.images, sm.output.manifest, dict(sm.config),
                        sm.params.sky_cutouts_dir)

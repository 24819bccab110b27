"""Rule realism_mocks: mock image set of one TNG-layout source (or the real observed set)."""

import torch

from simbridge.dataset.realism import build_mock_set, build_observed_from_fits
from simbridge.logs import job_logging

torch.set_num_threads(1)

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    p = sm.params
    name = sm.wildcards.imageset
    observed = name == "observed"
    if observed and p.observed_dir is not None:
        build_observed_from_fits(p.observed_dir, p.mocks, bool(p.observed_sky_subtracted),
                                 int(p.seed), p.splits, sm.output.images, sm.output.manifest,
                                 dict(sm.config))
    else:
        selection = {"stellar_mass_min_msun": p.stellar_mass_min_msun,
                     "max_galaxies": p.source.get("max_galaxies")}
        build_mock_set(p.base_path, int(p.snapshot), name, p.mocks, selection,
                       observed or bool(p.fit_simulations), int(p.seed), sm.output.images,
                       sm.output.manifest, dict(sm.config), p.sky_cutouts_dir,
                       split_fractions=p.splits if observed else None)

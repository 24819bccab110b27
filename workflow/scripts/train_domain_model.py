"""Rule train_domain_model: the random forest of one domain."""

import json
from pathlib import Path

from simbridge.extract.spectra import wavelength_grid
from simbridge.logs import job_logging
from simbridge.models.generalization import read_domain_sets, save_model, train_domain_model

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    name = sm.wildcards.domain
    spectra = read_domain_sets({name: sm.input.spectra}, wavelength_grid(sm.params.spectra))[name]
    features = json.loads(Path(sm.input.features).read_text())
    settings = dict(sm.params.settings)
    payload = train_domain_model(spectra, features, settings, int(settings["seed"]),
                                 n_jobs=sm.threads)
    save_model(payload, sm.output[0])

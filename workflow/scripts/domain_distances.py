"""Rule domain_distances: distance matrices between the domains (and observed spectra)."""

import json
from pathlib import Path

from simbridge.extract.spectra import read_spectra_file, wavelength_grid
from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.models.generalization import distances_payload, read_domain_sets

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    wave = wavelength_grid(sm.params.spectra)
    sets = read_domain_sets({n: sm.input[f"domain_{n}"] for n in sm.params.domains}, wave)
    features = json.loads(Path(sm.input.features).read_text())
    observed = read_spectra_file(sm.input.observed, wave) if "observed" in sm.input.keys() \
        else None
    training = {n: sets[n] for n in sm.params.training}
    write_json_atomic(sm.output[0], distances_payload(training, sets, features,
                                                      sm.params.distance, int(sm.params.seed),
                                                      observed))

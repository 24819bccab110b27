"""Rule select_spectral_features: ranked and clustered wavelengths from a pooled forest."""

from simbridge.extract.spectra import wavelength_grid
from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.models.generalization import read_domain_sets, select_features

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    sets = read_domain_sets(dict(sm.input.items()), wavelength_grid(sm.params.spectra))
    settings = dict(sm.params.settings)
    features = select_features(sets, settings, int(settings["seed"]), n_jobs=sm.threads)
    write_json_atomic(sm.output[0], features)

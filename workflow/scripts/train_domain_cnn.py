"""Rule train_domain_cnn: the 1D CNN of one domain (the project's training loop)."""

import torch

from simbridge.extract.spectra import wavelength_grid
from simbridge.logs import job_logging
from simbridge.models.generalization import read_domain_sets
from simbridge.models.spectrum_cnn import train_spectrum_cnn

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    # one thread: this small network gains nothing from more, and a busy machine's spinning
    # OpenMP threads slowed it a hundredfold
    torch.set_num_threads(sm.threads)
    name = sm.wildcards.domain
    spectra = read_domain_sets({name: sm.input.spectra}, wavelength_grid(sm.params.spectra))[name]
    settings = dict(sm.params.settings)
    seed = int(settings.pop("seed"))
    train_spectrum_cnn(spectra, settings, seed, sm.params.checkpoints, sm.output.model,
                       sm.output.history)

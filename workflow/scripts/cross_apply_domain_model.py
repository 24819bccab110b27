"""Rule cross_apply_domain_model: one model's error on every domain's test galaxies."""

import torch

from simbridge.extract.spectra import wavelength_grid
from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.models.generalization import cross_errors, load_model, read_domain_sets

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(1)  # CNN inference of a few hundred spectra; see train_domain_cnn
    sets = read_domain_sets({n: sm.input[f"domain_{n}"] for n in sm.params.domains},
                            wavelength_grid(sm.params.spectra))
    write_json_atomic(sm.output[0], cross_errors(load_model(sm.input.model), sets))

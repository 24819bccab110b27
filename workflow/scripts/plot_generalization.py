"""Rule plot_generalization: distance and error matrices, example spectra."""

import numpy as np

from simbridge.extract.spectra import read_spectra_file
from simbridge.logs import job_logging
from simbridge.models.training import derive_seed
from simbridge.report import generalization_figures as figs

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    figs.plot_distance_matrices(sm.input.metrics, sm.output.matrices)
    examples = {}
    for name in sm.params.domains:
        s = read_spectra_file(sm.input[f"domain_{name}"])
        test = np.flatnonzero(s.galaxies["role"].to_numpy() == "test")
        rng = np.random.default_rng(derive_seed(sm.params.seed, "example-spectra"))
        pick = np.sort(rng.choice(test, min(int(sm.params.n_examples), len(test)),
                                  replace=False))
        examples[name] = (s.wavelength_angstrom, s.flux[pick],
                          s.galaxies["log10_stellar_mass_msun"].to_numpy()[pick])
    figs.plot_example_spectra(examples, sm.output.spectra)

"""Rule plot_tng_maps: report figures of the extracted maps."""

from simbridge.logs import job_logging
from simbridge.report.figures import plot_example_maps, plot_exsitu_fraction_vs_mass

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    plot_example_maps(sm.input.maps, sm.input.manifest, sm.output.examples,
                      sm.params.n_galaxies, split="test")
    plot_exsitu_fraction_vs_mass(sm.input.manifest, sm.output.global_fraction)

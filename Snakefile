"""SimBridge: simulations to machine-learning datasets. Entry point of the workflow."""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo_universe.smk"
include: "workflow/rules/tng_maps.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        tng_maps_outputs(),
        tng_report_figures(),

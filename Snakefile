"""SimBridge: simulations to machine-learning datasets. Entry point of the workflow."""

from snakemake.utils import min_version, validate

from simbridge.config import check_config_semantics

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)
check_config_semantics(config)


report: "workflow/report/workflow.rst"


# Seconds-long bookkeeping jobs run where Snakemake runs instead of waiting in the SLURM queue.
localrules:
    all,
    extraction,
    dataset,
    figures,
    plan_views,
    assign_splits,
    dataset_manifest,
    check_leakage,
    plot_balancing,
    model,
    compare_exsitu_models,


include: "workflow/rules/common.smk"
include: "workflow/rules/demo_universe.smk"
include: "workflow/rules/tng_maps.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/exsitu_model.smk"


rule all:
    """Everything: the dataset, its figures, the trained ex-situ models and their evaluation."""
    default_target: True
    input:
        dataset_outputs(),
        tng_report_figures(),
        exsitu_model_outputs(),


# Named targets, one per stage (snakemake --cores 2 <name>); demo_universe is a rule of its own.
rule extraction:
    """Stage: galaxy selection, global properties, balancing plan and the maps of every batch."""
    input:
        extraction_outputs(),


rule dataset:
    """Stage: lineage, splits, one HDF5 file per split, manifest and the leakage check."""
    input:
        dataset_outputs(),


rule figures:
    """Stage: the report figures (then: snakemake --report results/report.html)."""
    input:
        tng_report_figures(),


rule model:
    """Stage: train the cVAE and flow of every model of the sweep, evaluate and compare them."""
    input:
        exsitu_model_outputs(),

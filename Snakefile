"""SimBridge: simulations to machine-learning datasets. Entry point of the workflow."""

from pathlib import Path

from snakemake.utils import min_version

from simbridge.config import read_config_file, validate_workflow_config

min_version("9.0")

# Snakemake's own loader reports a YAML syntax error without file or line: read it first.
if Path("config.yaml").is_file():
    read_config_file("config.yaml")


configfile: "config.yaml"


# snakemake.utils.validate (schema defaults filled in) with errors that start with the key,
# its value and what is allowed, then the checks the schema cannot express.
validate_workflow_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")


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
    infer,
    compare_exsitu_models,
    abundances_demo,
    abundances_extraction,
    abundances_dataset,
    check_abundance_disjointness,
    plot_abundance_planes,
    select_abundance_settings,
    plot_abundance_results,
    abundances_model,
    generalization_spectra,
    generalization_models,
    generalization_study,
    generalization_regression,
    plot_generalization,
    plot_generalization_model,
    dm2gal_demo,
    dm2gal_dataset,
    dm2gal_model,
    dm2gal_splits,
    check_dm2gal_splits,
    fit_dm2gal_hod,
    plot_exsitu_transfer,
    exsitu_transfer,
    realism_images,
    realism_models,
    realism_empty_sky,
    plot_realism,


include: "workflow/rules/common.smk"
include: "workflow/rules/demo_universe.smk"
include: "workflow/rules/tng_maps.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/exsitu_model.smk"
include: "workflow/rules/ifu.smk"
include: "workflow/rules/abundances.smk"
include: "workflow/rules/generalization.smk"
include: "workflow/rules/dm2gal.smk"
include: "workflow/rules/realism.smk"


BRANCH_OUTPUTS = {
    # branch name (config `branches`) -> everything `all` builds for it
    "exsitu": lambda: dataset_outputs()
    + tng_report_figures()
    + exsitu_model_outputs()
    + exsitu_inference_outputs()
    + ifu_outputs(),
    "generalization": lambda: generalization_outputs()
    + exsitu_transfer_outputs()
    + exsitu_expected_error_outputs(),
    "abundances": lambda: abundance_dataset_outputs() + abundance_model_outputs(),
    "dm2gal": dm2gal_outputs,
    "realism": realism_outputs,
}


rule all:
    """Everything of the branches in config `branches` (demo: all of them)."""
    default_target: True
    input:
        [f for branch in config["branches"] for f in BRANCH_OUTPUTS[branch]()],


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


rule infer:
    """Stage: apply a trained ex-situ model to the files of exsitu_model.inference.input_files."""
    input:
        exsitu_inference_outputs() + exsitu_expected_error_outputs() or no_inference_inputs,

"""IFU-like ex-situ dataset (config `ifu`): the same galaxies, views, lineage splits, model and
training jobs as the ideal dataset, on condition maps as an integral-field survey sees them.

With ifu.enabled false nothing here is requested: the DAG is the ideal one. The dataset, model
and evaluation rules reuse the ideal ones (`use rule ... with:`), with IFU paths."""

include: "ifu_common.smk"


localrules:
    ifu,
    ifu_dataset_manifest,
    check_ifu_leakage,
    plot_ifu_maps,
    compare_ifu_models,


rule ifu:
    """Stage: IFU-like dataset, its model, the ideal model on it, and the comparison."""
    input:
        ifu_outputs(),


rule extract_ifu_maps:
    """IFU-like condition maps (PSF, spaxels, S/N, Voronoi bins, errors) of one batch."""
    input:
        catalog=sim_path(paths.TNG_CATALOG),
        plan=sim_path(paths.TNG_VIEW_PLAN),
    output:
        maps=sim_path(paths.IFU_MAPS_BATCH),
        galaxies=sim_path(paths.IFU_MAPS_BATCH_GALAXIES),
    params:
        base_path=tng_base_path(),
        settings=ifu_extraction_config(),
    log:
        log_path("extract_ifu_maps/snap_{snapshot}_batch_{batch}"),
    benchmark:
        benchmark_path("extract_ifu_maps/snap_{snapshot}_batch_{batch}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/extract_ifu_maps.py"


use rule build_split as build_ifu_split with:
    input:
        maps=per_batch(paths.IFU_MAPS_BATCH),
        galaxies=per_batch(paths.IFU_MAPS_BATCH_GALAXIES),
        splits=sim_path(paths.TNG_SPLITS),
    output:
        sim_path(paths.IFU_DATASET_SPLIT),
    params:
        settings=ifu_dataset_config(),
    log:
        log_path("build_ifu_split/{split}"),
    benchmark:
        benchmark_path("build_ifu_split/{split}")


use rule dataset_manifest as ifu_dataset_manifest with:
    input:
        galaxies=per_batch(paths.IFU_MAPS_BATCH_GALAXIES),
        catalogs=expand(sim_path(paths.TNG_CATALOG), snapshot=SNAPSHOTS),
        plan=sim_path(paths.TNG_VIEW_PLAN),
        splits=sim_path(paths.TNG_SPLITS),
    output:
        sim_path(paths.IFU_DATASET_MANIFEST),
    params:
        settings=ifu_dataset_config(),
    log:
        log_path("ifu_dataset_manifest"),
    benchmark:
        benchmark_path("ifu_dataset_manifest")


use rule check_leakage as check_ifu_leakage with:
    input:
        splits=expand(sim_path(paths.IFU_DATASET_SPLIT), split=paths.SPLITS),
        links=sim_path(paths.TNG_LINEAGE_LINKS),
    output:
        sim_path(paths.IFU_LEAKAGE_CHECK),
    log:
        log_path("check_ifu_leakage"),
    benchmark:
        benchmark_path("check_ifu_leakage")


rule plot_ifu_maps:
    """Ideal and IFU-like maps of example test galaxies, with the Voronoi bins and S/N."""
    input:
        maps=ifu_split_file("test"),
    output:
        report(
            sim_path(paths.IFU_EXAMPLE_FIGURE),
            caption="../report/ifu_example_maps.rst",
            category="Ex-situ IFU-like",
            subcategory="dataset",
        ),
    params:
        n_galaxies=IFU["n_example_galaxies"],
    log:
        log_path("plot_ifu_maps"),
    benchmark:
        benchmark_path("plot_ifu_maps")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_ifu_maps.py"


use rule train_exsitu_cvae as train_ifu_cvae with:
    input:
        train=ifu_split_file("train"),
        validation=ifu_split_file("validation"),
        leakage=sim_path(paths.IFU_LEAKAGE_CHECK),
    output:
        model=ifu_model_path(paths.EXSITU_CVAE),
        history=ifu_model_path(paths.EXSITU_CVAE_HISTORY),
        curves=report(
            ifu_model_path(paths.EXSITU_CVAE_CURVES),
            caption="../report/cvae_training.rst",
            category="Ex-situ IFU-like",
            subcategory="IFU-trained {model}",
        ),
    params:
        settings=exsitu_cvae_config,
        checkpoints=lambda wc: ifu_model_path(paths.EXSITU_CHECKPOINTS).format(
            model=wc.model, stage="cvae"
        ),
    log:
        log_path("train_ifu_cvae/{model}"),
    benchmark:
        benchmark_path("train_ifu_cvae/{model}")


use rule train_exsitu_flow as train_ifu_flow with:
    input:
        cvae=ifu_model_path(paths.EXSITU_CVAE),
        train=ifu_split_file("train"),
        validation=ifu_split_file("validation"),
    output:
        model=ifu_model_path(paths.EXSITU_FLOW),
        history=ifu_model_path(paths.EXSITU_FLOW_HISTORY),
        curves=report(
            ifu_model_path(paths.EXSITU_FLOW_CURVES),
            caption="../report/flow_training.rst",
            category="Ex-situ IFU-like",
            subcategory="IFU-trained {model}",
        ),
    params:
        settings=exsitu_flow_config,
        checkpoints=lambda wc: ifu_model_path(paths.EXSITU_CHECKPOINTS).format(
            model=wc.model, stage="flow"
        ),
    log:
        log_path("train_ifu_flow/{model}"),
    benchmark:
        benchmark_path("train_ifu_flow/{model}")


use rule evaluate_exsitu_model as evaluate_ifu_model with:
    input:
        cvae=ifu_model_path(paths.EXSITU_CVAE),
        flow=ifu_model_path(paths.EXSITU_FLOW),
        test=ifu_split_file("test"),
    output:
        **_evaluation_outputs(ifu_model_path, "IFU-trained {model} on IFU maps"),
    params:
        settings=ifu_evaluation_config(),
        n_examples=EXSITU["evaluation"]["n_example_galaxies"],
    log:
        log_path("evaluate_ifu_model/{model}"),
    benchmark:
        benchmark_path("evaluate_ifu_model/{model}")


use rule evaluate_exsitu_model as evaluate_ideal_model_on_ifu with:
    input:
        cvae=sim_path(paths.EXSITU_CVAE),
        flow=sim_path(paths.EXSITU_FLOW),
        test=ifu_split_file("test"),
    output:
        **_evaluation_outputs(ideal_on_ifu_path, "ideal-trained {model} on IFU maps"),
    params:
        settings=ifu_evaluation_config(),
        n_examples=EXSITU["evaluation"]["n_example_galaxies"],
    log:
        log_path("evaluate_ideal_model_on_ifu/{model}"),
    benchmark:
        benchmark_path("evaluate_ideal_model_on_ifu/{model}")


rule compare_ifu_models:
    """Ideal on ideal, IFU on IFU, ideal on IFU (the mistake): residuals, coverage, radius."""
    input:
        ideal_test=split_file("test"),
        ifu_test=ifu_split_file("test"),
        ideal_metrics=sim_path(paths.EXSITU_METRICS),
        ideal_posterior=sim_path(paths.EXSITU_POSTERIOR),
        ifu_metrics=ifu_model_path(paths.EXSITU_METRICS),
        ifu_posterior=ifu_model_path(paths.EXSITU_POSTERIOR),
        mistake_metrics=ideal_on_ifu_path(paths.EXSITU_METRICS),
        mistake_posterior=ideal_on_ifu_path(paths.EXSITU_POSTERIOR),
    output:
        metrics=sim_path(paths.IFU_COMPARISON_METRICS),
        figure=report(
            sim_path(paths.IFU_COMPARISON_FIGURE),
            caption="../report/ifu_comparison.rst",
            category="Ex-situ IFU-like",
            subcategory="comparison",
        ),
    params:
        radius_bins=IFU["radius_bins_effective_radii"],
    log:
        log_path("compare_ifu_models/{model}"),
    benchmark:
        benchmark_path("compare_ifu_models/{model}")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/compare_ifu_models.py"

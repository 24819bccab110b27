rule train_exsitu_cvae:
    """Train the conditional VAE of one model of the sweep (GPU when present; resumes)."""
    input:
        train=split_file("train"),
        validation=split_file("validation"),
        leakage=sim_path(paths.TNG_LEAKAGE_CHECK),
    output:
        model=sim_path(paths.EXSITU_CVAE),
        history=sim_path(paths.EXSITU_CVAE_HISTORY),
        curves=report(
            sim_path(paths.EXSITU_CVAE_CURVES),
            caption="../report/cvae_training.rst",
            category="Ex-situ model",
            subcategory="{model}",
        ),
    params:
        settings=exsitu_cvae_config,
        checkpoints=lambda wc: sim_path(paths.EXSITU_CHECKPOINTS).format(
            model=wc.model, stage="cvae"
        ),
    threads: 2
    log:
        log_path("train_exsitu_cvae/{model}"),
    benchmark:
        benchmark_path("train_exsitu_cvae/{model}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/train_exsitu_cvae.py"


rule train_exsitu_flow:
    """Train the conditional MAF (zuko) on the latents of the trained cVAE's encoder."""
    input:
        cvae=sim_path(paths.EXSITU_CVAE),
        train=split_file("train"),
        validation=split_file("validation"),
    output:
        model=sim_path(paths.EXSITU_FLOW),
        history=sim_path(paths.EXSITU_FLOW_HISTORY),
        curves=report(
            sim_path(paths.EXSITU_FLOW_CURVES),
            caption="../report/flow_training.rst",
            category="Ex-situ model",
            subcategory="{model}",
        ),
    params:
        settings=exsitu_flow_config,
        checkpoints=lambda wc: sim_path(paths.EXSITU_CHECKPOINTS).format(
            model=wc.model, stage="flow"
        ),
    threads: 2
    log:
        log_path("train_exsitu_flow/{model}"),
    benchmark:
        benchmark_path("train_exsitu_flow/{model}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/train_exsitu_flow.py"


rule evaluate_exsitu_model:
    """Posterior draws for the test split in three modes; residuals, coverage and figures."""
    input:
        cvae=sim_path(paths.EXSITU_CVAE),
        flow=sim_path(paths.EXSITU_FLOW),
        test=split_file("test"),
    output:
        metrics=sim_path(paths.EXSITU_METRICS),
        posterior=sim_path(paths.EXSITU_POSTERIOR),
        residuals=report(
            sim_path(paths.EXSITU_RESIDUALS_FIGURE),
            caption="../report/exsitu_residuals.rst",
            category="Ex-situ model",
            subcategory="{model}",
        ),
        residual_vs_truth=report(
            sim_path(paths.EXSITU_RESIDUAL_VS_TRUTH_FIGURE),
            caption="../report/exsitu_residual_vs_truth.rst",
            category="Ex-situ model",
            subcategory="{model}",
        ),
        coverage=report(
            sim_path(paths.EXSITU_COVERAGE_FIGURE),
            caption="../report/exsitu_coverage.rst",
            category="Ex-situ model",
            subcategory="{model}",
        ),
        calibration=report(
            sim_path(paths.EXSITU_CALIBRATION_FIGURE),
            caption="../report/exsitu_calibration.rst",
            category="Ex-situ model",
            subcategory="{model}",
        ),
        examples=report(
            sim_path(paths.EXSITU_EXAMPLES_FIGURE),
            caption="../report/exsitu_examples.rst",
            category="Ex-situ model",
            subcategory="{model}",
        ),
    params:
        settings=exsitu_evaluation_config(),
        n_examples=EXSITU["evaluation"]["n_example_galaxies"],
    threads: 2
    log:
        log_path("evaluate_exsitu_model/{model}"),
    benchmark:
        benchmark_path("evaluate_exsitu_model/{model}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/evaluate_exsitu_model.py"


rule compare_exsitu_models:
    """Table and figure comparing the models of the sweep over latent size and beta."""
    input:
        metrics=per_model(paths.EXSITU_METRICS),
    output:
        table=sim_path(paths.EXSITU_SWEEP_TABLE),
        figure=report(
            sim_path(paths.EXSITU_SWEEP_FIGURE),
            caption="../report/exsitu_sweep.rst",
            category="Ex-situ model",
            subcategory="sweep",
        ),
    params:
        models=list(EXSITU_MODELS),
    log:
        log_path("compare_exsitu_models"),
    benchmark:
        benchmark_path("compare_exsitu_models")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/compare_exsitu_models.py"


rule infer_exsitu_posterior:
    """Apply a trained model to the condition maps of new galaxies (exsitu_model.inference)."""
    input:
        cvae=sim_path(paths.EXSITU_CVAE),
        flow=sim_path(paths.EXSITU_FLOW),
        train=split_file("train"),
        conditions=exsitu_inference_input,
    output:
        posterior=sim_path(paths.EXSITU_INFERENCE_POSTERIOR),
        summary=sim_path(paths.EXSITU_INFERENCE_SUMMARY),
        figures=report(
            directory(sim_path(paths.EXSITU_INFERENCE_FIGURES)),
            patterns=["galaxy_{index}.png"],
            caption="../report/exsitu_inference.rst",
            category="Ex-situ inference",
            subcategory="{model}: {name}",
        ),
    wildcard_constraints:
        name=r"[A-Za-z0-9_.-]+",
    params:
        settings=lambda wc: inference_settings(config) | {"model": wc.model},
        max_figures=EXSITU["inference"]["max_figures"],
    threads: 2
    log:
        log_path("infer_exsitu_posterior/{model}/{name}"),
    benchmark:
        benchmark_path("infer_exsitu_posterior/{model}/{name}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/infer_exsitu_posterior.py"

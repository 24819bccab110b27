# The abundances branch (CASBI on NIHAO): demo suite -> extraction through pynbody -> halo
# superpositions with checked splits -> two-step SBI (sbi 0.27) with optuna -> evaluation.


include: "abundances_common.smk"


rule nihao_demo_suite:
    """Write the NIHAO-format demo suite (only used when nihao.base_path is null)."""
    output:
        suite=directory(paths.NIHAO_DEMO_DIR),
        summary=paths.NIHAO_DEMO_SUMMARY,
    params:
        demo=NIHAO["demo"],
        seed=config["seed"],
    log:
        log_path("nihao_demo_suite"),
    benchmark:
        benchmark_path("nihao_demo_suite")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/nihao_demo_suite.py"


rule read_nihao_batch:
    """Load one share of the snapshots with pynbody: main halo, masses, time, abundances."""
    input:
        nihao_input,
    output:
        stars=paths.ABUNDANCE_BATCH,
        errors=paths.ABUNDANCE_BATCH_ERRORS,
    params:
        base_path=nihao_base_path(),
        settings=abundance_extraction_config(),
    log:
        log_path("read_nihao_batch/{batch}"),
    benchmark:
        benchmark_path("read_nihao_batch/{batch}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/read_nihao_batch.py"


rule abundance_histograms:
    """One global range; a histogram per building block; the error table."""
    input:
        stars=expand(paths.ABUNDANCE_BATCH, batch=NIHAO_BATCHES),
        errors=expand(paths.ABUNDANCE_BATCH_ERRORS, batch=NIHAO_BATCHES),
    output:
        histograms=paths.ABUNDANCE_HISTOGRAMS,
        blocks=paths.ABUNDANCE_BLOCKS,
        errors=paths.ABUNDANCE_ERRORS,
    params:
        settings=abundance_extraction_config(),
    log:
        log_path("abundance_histograms"),
    benchmark:
        benchmark_path("abundance_histograms")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/abundance_histograms.py"


rule superpose_abundances:
    """Superposed halos of every split (sparse template x membership product, chunked)."""
    input:
        histograms=paths.ABUNDANCE_HISTOGRAMS,
    output:
        **{split: abundance_split(split) for split in paths.SPLITS},
    params:
        settings={
            "seed": config["seed"],
            "abundances": {"superposition": ABUNDANCES["superposition"]},
        },
    log:
        log_path("superpose_abundances"),
    benchmark:
        benchmark_path("superpose_abundances")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/superpose_abundances.py"


rule check_abundance_disjointness:
    """Fail the run (and remove the split files) unless the splits obey the disjointness rule."""
    input:
        **{split: abundance_split(split) for split in paths.SPLITS},
    output:
        paths.ABUNDANCE_DISJOINTNESS,
    params:
        rule=ABUNDANCES["superposition"]["disjointness"],
    log:
        log_path("check_abundance_disjointness"),
    benchmark:
        benchmark_path("check_abundance_disjointness")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/check_abundance_disjointness.py"


rule plot_abundance_planes:
    """Report figure: building-block planes and superposed test halos."""
    input:
        histograms=paths.ABUNDANCE_HISTOGRAMS,
        test=abundance_split("test"),
        check=paths.ABUNDANCE_DISJOINTNESS,
    output:
        report(
            paths.ABUNDANCE_PLANES_FIGURE,
            caption="../report/abundance_planes.rst",
            category="Abundances",
            subcategory="dataset",
        ),
    log:
        log_path("plot_abundance_planes"),
    benchmark:
        benchmark_path("plot_abundance_planes")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_abundance_planes.py"


rule abundances_demo:
    """Stage: the NIHAO-format demo suite."""
    input:
        paths.NIHAO_DEMO_SUMMARY,


rule abundances_extraction:
    """Stage: building blocks (histograms with edges and units) and the error table."""
    input:
        paths.ABUNDANCE_HISTOGRAMS,
        paths.ABUNDANCE_BLOCKS,
        paths.ABUNDANCE_ERRORS,


rule abundances_dataset:
    """Stage: superposed halos of train/validation/test and the disjointness check."""
    input:
        abundance_dataset_outputs(),


# ----------------------------------------------------------------------------------------------
# Two-step inference: optuna workers, step-1 estimators, step-2 ensemble, evaluation
# ----------------------------------------------------------------------------------------------

rule tune_abundance_npe:
    """One optuna worker: its trials of the study shared through a journal file."""
    input:
        **ABUNDANCE_SPLIT_INPUTS,
    output:
        paths.ABUNDANCE_TUNING_WORKER,
    params:
        settings=abundance_training_config(),
        journal=paths.ABUNDANCE_TUNING_JOURNAL,
    threads: 1
    log:
        log_path("tune_abundance_npe/{worker}"),
    benchmark:
        benchmark_path("tune_abundance_npe/{worker}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/tune_abundance_npe.py"


rule select_abundance_settings:
    """The best trial's settings (and every trial, importances) from the shared study."""
    input:
        expand(paths.ABUNDANCE_TUNING_WORKER, worker=TUNING_WORKERS),
    output:
        paths.ABUNDANCE_BEST_SETTINGS,
    params:
        settings=abundance_training_config(),
        journal=paths.ABUNDANCE_TUNING_JOURNAL,
    log:
        log_path("select_abundance_settings"),
    benchmark:
        benchmark_path("select_abundance_settings")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/select_abundance_settings.py"


rule train_abundance_npe:
    """sbi NPE of step 1 (nsub_npe, nsub_mnpe) or a step-2 member (block_npe_<k>), seeded."""
    input:
        **ABUNDANCE_SPLIT_INPUTS,
        best=paths.ABUNDANCE_BEST_SETTINGS,
    output:
        abundance_model("{estimator}"),
    wildcard_constraints:
        estimator=r"nsub_npe|nsub_mnpe|block_npe_\d+",
    params:
        settings=abundance_training_config(),
    threads: 1
    log:
        log_path("train_abundance_npe/{estimator}"),
    benchmark:
        benchmark_path("train_abundance_npe/{estimator}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/train_abundance_npe.py"


rule train_nsub_classifier:
    """Skip-connection CNN classifier of N_sub (checkpointed every epoch; resumes)."""
    input:
        **ABUNDANCE_SPLIT_INPUTS,
    output:
        abundance_model("nsub_classifier"),
    params:
        settings=abundance_training_config(),
        checkpoints=paths.ABUNDANCE_CLASSIFIER_CHECKPOINTS,
    threads: 1
    log:
        log_path("train_nsub_classifier"),
    benchmark:
        benchmark_path("train_nsub_classifier")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/train_nsub_classifier.py"


rule evaluate_abundances:
    """Both steps on the test split: N_sub scores, posterior vs truth, SBC, TARP, coverage."""
    input:
        test=abundance_split("test"),
        nsub_npe=abundance_model("nsub_npe"),
        nsub_mnpe=abundance_model("nsub_mnpe"),
        nsub_classifier=abundance_model("nsub_classifier"),
        blocks=[abundance_model(m) for m in BLOCK_MEMBERS],
        best=paths.ABUNDANCE_BEST_SETTINGS,
    output:
        paths.ABUNDANCE_METRICS,
    params:
        settings=abundance_training_config(),
    threads: 2
    log:
        log_path("evaluate_abundances"),
    benchmark:
        benchmark_path("evaluate_abundances")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/evaluate_abundances.py"


rule plot_abundance_results:
    """Report figures of the evaluation: posterior vs truth, calibration, N_sub, tuning."""
    input:
        paths.ABUNDANCE_METRICS,
    output:
        **{
            figure: report(
                abundance_figure(figure),
                caption=f"../report/abundance_{figure}.rst",
                category="Abundances",
                subcategory="inference",
            )
            for figure in ABUNDANCE_FIGURES
        },
    log:
        log_path("plot_abundance_results"),
    benchmark:
        benchmark_path("plot_abundance_results")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_abundance_results.py"


rule abundances_model:
    """Stage: tuning, the step-1 and step-2 estimators, evaluation and figures."""
    input:
        abundance_model_outputs(),

# The dm2gal branch (CAMELS): paired demo suite -> voxel grids per run -> run-level splits with
# a check -> HOD baseline and two-phase 3D network -> evaluation (metrics.json) and figures.


include: "dm2gal_common.smk"


rule camels_demo_suite:
    """Write the paired CAMELS-format demo suite (only used when camels.base_path is null)."""
    output:
        suite=directory(paths.CAMELS_DEMO_DIR),
        summary=paths.CAMELS_DEMO_SUMMARY,
    params:
        demo=CAMELS["demo"],
        suite=CAMELS["suite"],
        seed=config["seed"],
    threads: 2
    log:
        log_path("camels_demo_suite"),
    benchmark:
        benchmark_path("camels_demo_suite")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/camels_demo_suite.py"


rule dm2gal_voxels:
    """Dark-matter density (CIC/NGP) and galaxy counts of one twin pair, with halo tables."""
    input:
        camels_input,
    output:
        paths.DM2GAL_GRID,
    params:
        base_path=camels_base_path(),
        settings=dm2gal_settings(),
    log:
        log_path("dm2gal_voxels/{run}"),
    benchmark:
        benchmark_path("dm2gal_voxels/{run}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/dm2gal_voxels.py"


rule dm2gal_splits:
    """Whole runs to train/validation/test by their place in the parameter hypercube."""
    input:
        camels_input,
        grids=DM2GAL_GRIDS,
    output:
        paths.DM2GAL_SPLITS,
    params:
        base_path=camels_base_path(),
        settings=dm2gal_settings(),
    log:
        log_path("dm2gal_splits"),
    benchmark:
        benchmark_path("dm2gal_splits")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/dm2gal_splits.py"


rule check_dm2gal_splits:
    """Fail the run unless no run lies in two splits and every grid file's run is in one."""
    input:
        splits=paths.DM2GAL_SPLITS,
        grids=DM2GAL_GRIDS,
    output:
        paths.DM2GAL_SPLIT_CHECK,
    log:
        log_path("check_dm2gal_splits"),
    benchmark:
        benchmark_path("check_dm2gal_splits")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/check_dm2gal_splits.py"


rule fit_dm2gal_hod:
    """The three-parameter HOD fitted on the training runs' N-body halos."""
    input:
        splits=paths.DM2GAL_SPLITS,
        check=paths.DM2GAL_SPLIT_CHECK,
        grids=DM2GAL_GRIDS,
    output:
        paths.DM2GAL_HOD,
    log:
        log_path("fit_dm2gal_hod"),
    benchmark:
        benchmark_path("fit_dm2gal_hod")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/fit_dm2gal_hod.py"


rule train_dm2gal:
    """One network of one phase (checkpointed every epoch; resumes after a kill)."""
    input:
        splits=paths.DM2GAL_SPLITS,
        check=paths.DM2GAL_SPLIT_CHECK,
        grids=DM2GAL_GRIDS,
    output:
        model=paths.DM2GAL_MODEL,
        history=paths.DM2GAL_HISTORY,
    params:
        settings=dm2gal_settings(),
        checkpoints=paths.DM2GAL_CHECKPOINTS,
    threads: 1
    log:
        log_path("train_dm2gal/{phase}_{arch}"),
    benchmark:
        benchmark_path("train_dm2gal/{phase}_{arch}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/train_dm2gal.py"


rule evaluate_dm2gal:
    """Phase-1 scores, predicted count fields, HOD mocks and power spectra of the test runs."""
    input:
        splits=paths.DM2GAL_SPLITS,
        grids=DM2GAL_GRIDS,
        hod=paths.DM2GAL_HOD,
        models=[dm2gal_model(m) for m in DM2GAL_PHASE_ARCHS],
    output:
        metrics=paths.DM2GAL_METRICS,
        predictions=paths.DM2GAL_PREDICTIONS,
    params:
        settings=dm2gal_settings(),
    threads: 1
    log:
        log_path("evaluate_dm2gal"),
    benchmark:
        benchmark_path("evaluate_dm2gal")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/evaluate_dm2gal.py"


rule plot_dm2gal:
    """Report figures: training curves, precision-recall, power spectra, field slices."""
    input:
        metrics=paths.DM2GAL_METRICS,
        predictions=paths.DM2GAL_PREDICTIONS,
        histories=[dm2gal_history(m) for m in DM2GAL_PHASE_ARCHS],
    output:
        **{
            figure: report(
                dm2gal_figure(figure),
                caption=f"../report/dm2gal_{figure}.rst",
                category="Dark matter to galaxies",
            )
            for figure in DM2GAL_FIGURES
        },
    log:
        log_path("plot_dm2gal"),
    benchmark:
        benchmark_path("plot_dm2gal")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_dm2gal.py"


rule dm2gal_demo:
    """Stage: the paired CAMELS-format demo suite."""
    input:
        paths.CAMELS_DEMO_SUMMARY,


rule dm2gal_dataset:
    """Stage: voxel grids of every run, run splits and their check."""
    input:
        DM2GAL_GRIDS,
        paths.DM2GAL_SPLITS,
        paths.DM2GAL_SPLIT_CHECK,


rule dm2gal_model:
    """Stage: HOD, both phases, evaluation and figures."""
    input:
        dm2gal_outputs(),

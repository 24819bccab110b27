rule plot_tng_maps:
    """Example maps (test split) and the global ex-situ fraction of the extracted galaxies."""
    input:
        maps=split_file("test"),
        manifest=sim_path(paths.TNG_DATASET_MANIFEST),
    output:
        examples=report(
            sim_path(paths.TNG_EXAMPLE_FIGURE),
            caption="../report/example_maps.rst",
            category="TNG ex-situ maps",
        ),
        global_fraction=report(
            sim_path(paths.TNG_GLOBAL_FIGURE),
            caption="../report/exsitu_fraction_vs_mass.rst",
            category="TNG ex-situ maps",
        ),
    params:
        n_galaxies=config["maps"]["n_example_galaxies"],
    log:
        log_path("plot_tng_maps"),
    benchmark:
        benchmark_path("plot_tng_maps")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_tng_maps.py"


rule plot_balancing:
    """Before/after balancing histograms and the samples of each split."""
    input:
        summary=sim_path(paths.TNG_BALANCING),
        manifest=sim_path(paths.TNG_DATASET_MANIFEST),
        leakage=sim_path(paths.TNG_LEAKAGE_CHECK),
    output:
        report(
            sim_path(paths.TNG_BALANCING_FIGURE),
            caption="../report/balancing.rst",
            category="TNG dataset",
        ),
    log:
        log_path("plot_balancing"),
    benchmark:
        benchmark_path("plot_balancing")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_balancing.py"

rule plot_tng_maps:
    """Example maps and the global ex-situ fraction of the extracted galaxies."""
    input:
        maps=sim_path(paths.TNG_MAPS),
        manifest=sim_path(paths.TNG_MANIFEST),
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
        seed=config["seed"],
    log:
        log_path("plot_tng_maps"),
    benchmark:
        benchmark_path("plot_tng_maps")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_tng_maps.py"

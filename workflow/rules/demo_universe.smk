rule demo_universe:
    """Write the synthetic TNG-layout simulation (only used when tng.base_path is null)."""
    output:
        sim_dir=directory(sim_path(paths.DEMO_SIM_DIR)),
        summary=sim_path(paths.DEMO_SUMMARY),
    params:
        demo=config["demo_universe"],
        seed=config["seed"],
    log:
        log_path("demo_universe"),
    benchmark:
        benchmark_path("demo_universe")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/demo_universe.py"

rule select_galaxies:
    """Subhalos above the stellar-mass cut of one snapshot, assigned to extraction batches."""
    input:
        tng_archive_input,
    output:
        sim_path(paths.TNG_CATALOG),
    params:
        base_path=tng_base_path(),
        tng=selection_config(),
        archive=archive_fingerprint,
    log:
        log_path("select_galaxies/snap_{snapshot}"),
    benchmark:
        benchmark_path("select_galaxies/snap_{snapshot}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/select_galaxies.py"


rule measure_galaxies:
    """Global ex-situ fraction of every galaxy of one batch (what balancing needs)."""
    input:
        catalog=sim_path(paths.TNG_CATALOG),
    output:
        sim_path(paths.TNG_MEASURE_BATCH),
    params:
        base_path=tng_base_path(),
        settings=measure_config(),
    log:
        log_path("measure_galaxies/snap_{snapshot}_batch_{batch}"),
    benchmark:
        benchmark_path("measure_galaxies/snap_{snapshot}_batch_{batch}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/measure_galaxies.py"


rule plan_views:
    """Balancing plan: lines of sight per galaxy from the rarity of its ex-situ fraction."""
    input:
        per_batch(paths.TNG_MEASURE_BATCH),
    output:
        plan=sim_path(paths.TNG_VIEW_PLAN),
        summary=sim_path(paths.TNG_BALANCING),
    params:
        balancing=config["balancing"],
    log:
        log_path("plan_views"),
    benchmark:
        benchmark_path("plan_views")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/plan_views.py"


rule extract_maps:
    """Condition and ex-situ maps of every galaxy of one batch (many galaxies per job)."""
    input:
        catalog=sim_path(paths.TNG_CATALOG),
        plan=sim_path(paths.TNG_VIEW_PLAN),
    output:
        maps=sim_path(paths.TNG_MAPS_BATCH),
        galaxies=sim_path(paths.TNG_MAPS_BATCH_GALAXIES),
    params:
        base_path=tng_base_path(),
        settings=extraction_config(),
    log:
        log_path("extract_maps/snap_{snapshot}_batch_{batch}"),
    benchmark:
        benchmark_path("extract_maps/snap_{snapshot}_batch_{batch}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/extract_maps.py"

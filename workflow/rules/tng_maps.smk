rule select_galaxies:
    """Subhalos above the stellar-mass cut of one snapshot, assigned to extraction batches."""
    input:
        tng_archive_input,
    output:
        sim_path(paths.TNG_CATALOG),
    params:
        base_path=tng_base_path(),
        tng=config["tng"],
    log:
        log_path("select_galaxies/snap_{snapshot}"),
    benchmark:
        benchmark_path("select_galaxies/snap_{snapshot}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/select_galaxies.py"


rule extract_maps:
    """Condition and ex-situ maps of every galaxy of one batch (many galaxies per job)."""
    input:
        catalog=sim_path(paths.TNG_CATALOG),
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


rule merge_maps:
    """One chunked HDF5 file of all samples and the galaxy manifest."""
    input:
        maps=expand(sim_path(paths.TNG_MAPS_BATCH), snapshot=SNAPSHOTS, batch=BATCHES),
        galaxies=expand(
            sim_path(paths.TNG_MAPS_BATCH_GALAXIES), snapshot=SNAPSHOTS, batch=BATCHES
        ),
        catalogs=expand(sim_path(paths.TNG_CATALOG), snapshot=SNAPSHOTS),
    output:
        maps=sim_path(paths.TNG_MAPS),
        manifest=sim_path(paths.TNG_MANIFEST),
    params:
        settings=extraction_config(),
    log:
        log_path("merge_maps"),
    benchmark:
        benchmark_path("merge_maps")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/merge_maps.py"

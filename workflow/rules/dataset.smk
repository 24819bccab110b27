rule link_snapshots:
    """Lineage groups: the same physical galaxy at every snapshot (merger trees or particle IDs)."""
    input:
        catalogs=expand(sim_path(paths.TNG_CATALOG), snapshot=SNAPSHOTS),
    output:
        lineage=sim_path(paths.TNG_LINEAGE),
        links=sim_path(paths.TNG_LINEAGE_LINKS),
    params:
        base_path=tng_base_path(),
        splits=lineage_config(),
        archive=lambda wildcards: trees_fingerprint(),
    log:
        log_path("link_snapshots"),
    benchmark:
        benchmark_path("link_snapshots")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/link_snapshots.py"


rule assign_splits:
    """Train/validation/test split by lineage group, stratified by ex-situ fraction."""
    input:
        plan=sim_path(paths.TNG_VIEW_PLAN),
        lineage=sim_path(paths.TNG_LINEAGE),
        links=sim_path(paths.TNG_LINEAGE_LINKS),
    output:
        sim_path(paths.TNG_SPLITS),
    params:
        splits=config["splits"],
        bins=config["balancing"]["exsitu_fraction_bins"],
        seed=config["seed"],
    log:
        log_path("assign_splits"),
    benchmark:
        benchmark_path("assign_splits")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/assign_splits.py"


rule build_split:
    """One HDF5 file per split, copied from the batch files (one sample per chunk)."""
    input:
        maps=per_batch(paths.TNG_MAPS_BATCH),
        galaxies=per_batch(paths.TNG_MAPS_BATCH_GALAXIES),
        splits=sim_path(paths.TNG_SPLITS),
    output:
        sim_path(paths.TNG_DATASET_SPLIT),
    params:
        settings=dataset_config(),
    log:
        log_path("build_split/{split}"),
    benchmark:
        benchmark_path("build_split/{split}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/build_split.py"


rule dataset_manifest:
    """One row per galaxy: split, lineage group, views, first sample, or why it was left out."""
    input:
        galaxies=per_batch(paths.TNG_MAPS_BATCH_GALAXIES),
        catalogs=expand(sim_path(paths.TNG_CATALOG), snapshot=SNAPSHOTS),
        plan=sim_path(paths.TNG_VIEW_PLAN),
        splits=sim_path(paths.TNG_SPLITS),
    output:
        sim_path(paths.TNG_DATASET_MANIFEST),
    params:
        settings=dataset_config(),
    log:
        log_path("dataset_manifest"),
    benchmark:
        benchmark_path("dataset_manifest")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/dataset_manifest.py"


rule check_leakage:
    """Fail the run (and remove the split files) if a physical galaxy crosses splits."""
    input:
        splits=expand(sim_path(paths.TNG_DATASET_SPLIT), split=paths.SPLITS),
        links=sim_path(paths.TNG_LINEAGE_LINKS),
    output:
        sim_path(paths.TNG_LEAKAGE_CHECK),
    log:
        log_path("check_leakage"),
    benchmark:
        benchmark_path("check_leakage")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/check_leakage.py"

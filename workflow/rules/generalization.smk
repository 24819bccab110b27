"""Generalization branch: spectra per domain, features, distances, models, errors, regression."""


include: "generalization_common.smk"


rule generalization_universe:
    """Write one demo-universe variant (TNG layout) of the generalization branch."""
    output:
        sim_dir=directory(paths.GEN_UNIVERSE_DIR),
        summary=paths.GEN_UNIVERSE_SUMMARY,
    params:
        demo=lambda wc: demo_universe_params(GEN, GEN_UNIVERSES[wc.universe]),
        seed=config["seed"],
    log:
        log_path("generalization_universe/{universe}"),
    benchmark:
        benchmark_path("generalization_universe/{universe}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/demo_universe.py"


rule generalization_catalog:
    """Galaxies of one universe above the mass cut and their roles (shared by its domains)."""
    input:
        gen_universe_input,
    output:
        paths.GEN_CATALOG,
    params:
        base_path=lambda wc: gen_base_path(wc.universe),
        snapshot=GEN["snapshot"],
        settings=gen_catalog_settings(),
        seed=config["seed"],
    log:
        log_path("generalization_catalog/{universe}"),
    benchmark:
        benchmark_path("generalization_catalog/{universe}")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/generalization_catalog.py"


rule render_spectra:
    """Spectra of every galaxy of one domain (BC03 SSPs over its star particles, dust, noise)."""
    input:
        catalog=lambda wc: paths.GEN_CATALOG.format(universe=GEN_DOMAINS[wc.domain]["universe"]),
    output:
        spectra=paths.GEN_SPECTRA,
        manifest=paths.GEN_SPECTRA_MANIFEST,
    params:
        base_path=lambda wc: gen_base_path(GEN_DOMAINS[wc.domain]["universe"]),
        snapshot=GEN["snapshot"],
        domain=lambda wc: GEN_DOMAINS[wc.domain],
        spectra=GEN["spectra"],
        min_star_particles=GEN["min_star_particles"],
        min_galaxies=GEN["min_galaxies"],
        seed=config["seed"],
    log:
        log_path("render_spectra/{domain}"),
    benchmark:
        benchmark_path("render_spectra/{domain}")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/render_spectra.py"


rule read_observed_spectra:
    """Real mode: SDSS spec-*.fits spectra on the rest-frame grid of the domains."""
    output:
        spectra=paths.GEN_OBSERVED_SPECTRA,
        manifest=paths.GEN_OBSERVED_MANIFEST,
    params:
        directory=GEN["observed_spectra_dir"],
        spectra=GEN["spectra"],
        seed=config["seed"],
    log:
        log_path("read_observed_spectra"),
    benchmark:
        benchmark_path("read_observed_spectra")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/read_observed_spectra.py"


rule select_spectral_features:
    """Random forest on the pooled feature-selection galaxies: ranked and clustered wavelengths."""
    input:
        **gen_spectra(GEN_TRAINING),
    output:
        paths.GEN_FEATURES,
    params:
        settings={"seed": config["seed"], **GEN["feature_selection"]},
        spectra=GEN["spectra"],
    threads: 2
    log:
        log_path("select_spectral_features"),
    benchmark:
        benchmark_path("select_spectral_features")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/select_spectral_features.py"


rule domain_distances:
    """Distances from every training domain to every domain (and to observed spectra)."""
    input:
        unpack(
            lambda wc: {
                "features": paths.GEN_FEATURES,
                **{f"domain_{n}": p for n, p in gen_spectra(GEN_DOMAINS).items()},
                **({"observed": paths.GEN_OBSERVED_SPECTRA} if GEN_OBSERVED else {}),
            }
        ),
    output:
        paths.GEN_DISTANCES,
    params:
        training=GEN_TRAINING,
        domains=list(GEN_DOMAINS),
        distance=GEN["distance"],
        spectra=GEN["spectra"],
        seed=config["seed"],
    log:
        log_path("domain_distances"),
    benchmark:
        benchmark_path("domain_distances")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/domain_distances.py"


rule train_domain_model:
    """Random forest of one training domain on its training galaxies (selected wavelengths)."""
    input:
        spectra=paths.GEN_SPECTRA,
        features=paths.GEN_FEATURES,
    output:
        paths.GEN_RF_MODEL,
    params:
        settings={"seed": config["seed"], **GEN["random_forest"]},
        spectra=GEN["spectra"],
    threads: 2
    log:
        log_path("train_domain_model/{domain}"),
    benchmark:
        benchmark_path("train_domain_model/{domain}")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/train_domain_model.py"


rule train_domain_cnn:
    """1D CNN of one training domain on its whole spectra (checkpoints every epoch, resumes)."""
    input:
        spectra=paths.GEN_SPECTRA,
    output:
        model=paths.GEN_CNN_MODEL,
        history=paths.GEN_CNN_HISTORY,
    params:
        settings={"seed": config["seed"], **GEN["cnn"]},
        spectra=GEN["spectra"],
        checkpoints=lambda wc: paths.GEN_CNN_CHECKPOINTS.format(domain=wc.domain),
    threads: 1
    log:
        log_path("train_domain_cnn/{domain}"),
    benchmark:
        benchmark_path("train_domain_cnn/{domain}")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/train_domain_cnn.py"


rule cross_apply_domain_model:
    """One domain's model applied to the test galaxies of every domain: MSE of log M*."""
    input:
        unpack(
            lambda wc: {
                "model": GEN_MODEL_PATHS[wc.kind].format(domain=wc.domain),
                **{f"domain_{n}": p for n, p in gen_spectra(GEN_DOMAINS).items()},
            }
        ),
    output:
        paths.GEN_ERRORS,
    params:
        domains=list(GEN_DOMAINS),
        spectra=GEN["spectra"],
    log:
        log_path("cross_apply_domain_model/{kind}/{domain}"),
    benchmark:
        benchmark_path("cross_apply_domain_model/{kind}/{domain}")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/cross_apply_domain_model.py"


rule generalization_regression:
    """Error against distance with bootstrap intervals; predictions for held-out domains."""
    input:
        distances=paths.GEN_DISTANCES,
        errors=generalization_errors(),
    output:
        paths.GEN_METRICS,
    params:
        holdout=GEN["holdout_domains"],
        regression=GEN["regression"],
        seed=config["seed"],
    log:
        log_path("generalization_regression"),
    benchmark:
        benchmark_path("generalization_regression")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/generalization_regression.py"


rule plot_generalization_model:
    """Report figures of one model kind: error vs distance, held-out domains."""
    input:
        metrics=paths.GEN_METRICS,
    output:
        error_distance=report(
            paths.GEN_ERROR_DISTANCE_FIGURE,
            caption="../report/generalization_error_vs_distance.rst",
            category="Generalization",
            subcategory="{kind}",
        ),
        heldout=report(
            paths.GEN_HELDOUT_FIGURE,
            caption="../report/generalization_heldout.rst",
            category="Generalization",
            subcategory="{kind}",
        ),
    log:
        log_path("plot_generalization_model/{kind}"),
    benchmark:
        benchmark_path("plot_generalization_model/{kind}")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/plot_generalization_model.py"


rule plot_generalization:
    """Report figures: distance and error matrices, example spectra of every domain."""
    input:
        unpack(
            lambda wc: {
                "metrics": paths.GEN_METRICS,
                **{f"domain_{n}": p for n, p in gen_spectra(GEN_DOMAINS).items()},
            }
        ),
    output:
        matrices=report(
            paths.GEN_DISTANCE_MATRIX_FIGURE,
            caption="../report/generalization_distance_matrices.rst",
            category="Generalization",
            subcategory="domains",
        ),
        spectra=report(
            paths.GEN_SPECTRA_FIGURE,
            caption="../report/generalization_spectra.rst",
            category="Generalization",
            subcategory="domains",
        ),
    params:
        domains=list(GEN_DOMAINS),
        n_examples=GEN["n_example_spectra"],
        seed=config["seed"],
    log:
        log_path("plot_generalization"),
    benchmark:
        benchmark_path("plot_generalization")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/plot_generalization.py"


# Named targets of the branch's stages (snakemake --cores 2 <name>).
rule generalization_spectra:
    """Stage: demo universes, catalogs and the spectra of every domain."""
    input:
        generalization_spectra_outputs(),


rule generalization_models:
    """Stage: feature selection, distances, one model per domain and its cross-domain errors."""
    input:
        [paths.GEN_FEATURES, paths.GEN_DISTANCES] + generalization_model_outputs(),


rule generalization_study:
    """Stage: the error-distance regression, metrics.json and the report figures."""
    input:
        [paths.GEN_METRICS] + generalization_figures(),


include: "exsitu_transfer.smk"


rule exsitu_transfer:
    """Stage: the ex-situ map model on other universes, and expected errors of inference inputs."""
    input:
        exsitu_transfer_outputs() + exsitu_expected_error_outputs(),

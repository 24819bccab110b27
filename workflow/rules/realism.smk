"""Realism branch: demo universes, mock image sets, archetypes, PixelCNNs, LLR evaluation."""


include: "realism_common.smk"


rule realism_universe:
    """Write one demo universe (TNG layout) of the realism branch."""
    output:
        sim_dir=directory(paths.REALISM_UNIVERSE_DIR),
        summary=paths.REALISM_UNIVERSE_SUMMARY,
    params:
        demo=lambda wc: realism_universe_demo(wc.universe),
        seed=lambda wc: realism_universe_seed(wc.universe),
    log:
        log_path("realism_universe/{universe}"),
    benchmark:
        benchmark_path("realism_universe/{universe}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/demo_universe.py"


rule realism_mocks:
    """SDSS-like r-band mocks of one TNG-layout source (the observed set or a simulation),
    with their Sersic fits, or (real mode) the observed set from the user's FITS cutouts."""
    input:
        realism_source_input,
    output:
        images=realism_mock_path(paths.REALISM_SET),
        manifest=realism_mock_path(paths.REALISM_SET_MANIFEST),
    params:
        source=lambda wc: REALISM_SOURCES.get(wc.imageset, {}),
        base_path=lambda wc: (
            realism_base_path(wc.imageset) if wc.imageset in REALISM_SOURCES else None
        ),
        observed_dir=REALISM["observed_dir"],
        observed_sky_subtracted=REALISM["observed_sky_subtracted"],
        sky_cutouts_dir=REALISM["sky_cutouts_dir"],
        snapshot=REALISM["snapshot"],
        stellar_mass_min_msun=REALISM["stellar_mass_min_msun"],
        mocks=REALISM["mocks"],
        fit_simulations=REALISM["fit_simulations"],
        splits=REALISM["splits"],
        seed=config["seed"],
    log:
        log_path("realism_mocks/{imageset}"),
    benchmark:
        benchmark_path("realism_mocks/{imageset}")
    conda:
        "../../envs/realism.yaml"
    script:
        "../scripts/realism_mocks.py"


rule realism_archetypes:
    """Sersic archetypes of the observed set: its fits rendered with the same PSF and noise."""
    input:
        images=realism_set("observed"),
        manifest=realism_manifest("observed"),
    output:
        images=realism_set("archetype"),
        manifest=realism_manifest("archetype"),
    params:
        mocks=REALISM["mocks"],
        sky_cutouts_dir=REALISM["sky_cutouts_dir"],
        seed=config["seed"],
    log:
        log_path("realism_archetypes"),
    benchmark:
        benchmark_path("realism_archetypes")
    conda:
        "../../envs/realism.yaml"
    script:
        "../scripts/realism_archetypes.py"


rule realism_empty_sky:
    """Control set: empty sky with the noise of the mocks (or the user's sky cutouts)."""
    output:
        images=realism_set("empty_sky"),
        manifest=realism_manifest("empty_sky"),
    params:
        n=REALISM["n_empty_sky"],
        mocks=REALISM["mocks"],
        sky_cutouts_dir=REALISM["sky_cutouts_dir"],
        seed=config["seed"],
    log:
        log_path("realism_empty_sky"),
    benchmark:
        benchmark_path("realism_empty_sky")
    conda:
        "../../envs/realism.yaml"
    script:
        "../scripts/realism_empty_sky.py"


rule train_realism_model:
    """One PixelCNN (observed set or archetypes, fine-tuned from the pooled model of both;
    _norot: without rotation augmentation)."""
    input:
        unpack(realism_model_input),
    output:
        model=paths.REALISM_MODEL,
        history=paths.REALISM_HISTORY,
    params:
        pixelcnn=REALISM["pixelcnn"],
        checkpoint_dir=lambda wc: paths.REALISM_CHECKPOINTS.format(model=wc.model),
        seed=config["seed"],
    threads: 1
    log:
        log_path("train_realism_model/{model}"),
    benchmark:
        benchmark_path("train_realism_model/{model}")
    conda:
        "../../envs/realism.yaml"
    script:
        "../scripts/train_realism_model.py"


rule evaluate_realism:
    """LLR of every image set, per-pixel LLR maps, bootstrap trends and metrics.json."""
    input:
        **realism_evaluation_inputs(),
    output:
        metrics=paths.REALISM_METRICS,
        scores=paths.REALISM_SCORES,
    params:
        simulations=REALISM_SIMULATIONS,
        models=REALISM_MODELS,
        closest=REALISM["closest_simulation"],
        evaluation=REALISM["evaluation"],
        seed=config["seed"],
    log:
        log_path("evaluate_realism"),
    benchmark:
        benchmark_path("evaluate_realism")
    conda:
        "../../envs/realism.yaml"
    script:
        "../scripts/evaluate_realism.py"


rule plot_realism:
    """Report figures: LLR distributions, trends, example images with LLR maps, curves."""
    input:
        metrics=paths.REALISM_METRICS,
        scores=paths.REALISM_SCORES,
        histories=[paths.REALISM_HISTORY.format(model=m) for m in REALISM_MODELS],
    output:
        **{
            f: report(
                paths.REALISM_FIGURE.format(figure=f),
                caption=f"../report/realism_{f}.rst",
                category="Realism",
            )
            for f in REALISM_FIGURES
        },
    params:
        models=REALISM_MODELS,
    log:
        log_path("plot_realism"),
    benchmark:
        benchmark_path("plot_realism")
    conda:
        "../../envs/reporting.yaml"
    script:
        "../scripts/plot_realism.py"


rule realism_images:
    """Stage: every image set of the realism branch (mocks, archetypes, empty sky)."""
    input:
        [
            realism_set(n)
            for n in ["observed", "archetype", "empty_sky", *REALISM_SIMULATIONS]
        ],


rule realism_models:
    """Stage: the PixelCNNs of the realism branch."""
    input:
        [paths.REALISM_MODEL.format(model=m) for m in REALISM_MODELS],

"""The ex-situ map model on other universes: expected error against distance
(generalization.exsitu_transfer; simbridge.models.exsitu_transfer)."""


include: "exsitu_transfer_common.smk"


rule exsitu_transfer_universe:
    """Write one transfer universe: the TNG branch's demo universe with its own seed and
    overrides (TNG layout)."""
    output:
        sim_dir=directory(paths.GEN_TRANSFER_UNIVERSE_DIR),
        summary=paths.GEN_TRANSFER_UNIVERSE_SUMMARY,
    params:
        demo=lambda wc: transfer_universe_params(
            config["demo_universe"], TRANSFER_UNIVERSES[wc.transfer], TRANSFER["snapshot"]
        ),
        seed=lambda wc: derive_seed(config["seed"], "exsitu-transfer-universe", wc.transfer),
    log:
        log_path("exsitu_transfer_universe/{transfer}"),
    benchmark:
        benchmark_path("exsitu_transfer_universe/{transfer}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/demo_universe.py"


rule extract_transfer_maps:
    """Maps of every galaxy of one transfer universe, with the TNG branch's extraction."""
    input:
        transfer_universe_input,
    output:
        catalog=paths.GEN_TRANSFER_CATALOG,
        maps=paths.GEN_TRANSFER_MAPS,
        manifest=paths.GEN_TRANSFER_MANIFEST,
    params:
        base_path=lambda wc: transfer_base_path(wc.transfer),
        snapshot=TRANSFER["snapshot"],
        views=TRANSFER["views_per_galaxy"],
        settings={
            "seed": config["seed"],
            **{k: config[k] for k in ("tng", "maps", "balancing")},
        },
    log:
        log_path("extract_transfer_maps/{transfer}"),
    benchmark:
        benchmark_path("extract_transfer_maps/{transfer}")
    conda:
        "../../envs/extraction.yaml"
    script:
        "../scripts/extract_transfer_maps.py"


rule exsitu_transfer_study:
    """One ex-situ model on the test split and every transfer universe: errors, distances,
    the error-distance fit and leave-one-universe-out predictions."""
    input:
        unpack(
            lambda wc: {
                "cvae": sim_path(paths.EXSITU_CVAE).replace("{model}", wc.model),
                "flow": sim_path(paths.EXSITU_FLOW).replace("{model}", wc.model),
                "train": split_file("train"),
                "test": split_file("test"),
                **{f"maps_{n}": p for n, p in transfer_maps(wc).items()},
            }
        ),
    output:
        metrics=paths.GEN_TRANSFER_METRICS,
        applied=directory(paths.GEN_TRANSFER_APPLIED),
    params:
        settings={k: v for k, v in TRANSFER.items() if k != "enabled"},
        universes=list(TRANSFER_UNIVERSES),
        seed=config["seed"],
    threads: 2
    log:
        log_path("exsitu_transfer_study/{model}"),
    benchmark:
        benchmark_path("exsitu_transfer_study/{model}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/exsitu_transfer_study.py"


rule plot_exsitu_transfer:
    """Report figure of one model: error against distance, leave-one-universe-out."""
    input:
        metrics=paths.GEN_TRANSFER_METRICS,
    output:
        figure=report(
            paths.GEN_TRANSFER_FIGURE,
            caption="../report/exsitu_transfer.rst",
            category="Generalization",
            subcategory="ex-situ map model",
        ),
    log:
        log_path("plot_exsitu_transfer/{model}"),
    benchmark:
        benchmark_path("plot_exsitu_transfer/{model}")
    conda:
        "../../envs/generalization.yaml"
    script:
        "../scripts/plot_exsitu_transfer.py"


rule exsitu_expected_error:
    """Expected per-pixel error of the ex-situ model on one inference input file, from its
    distance to the training split (the transfer study's fit)."""
    input:
        cvae=sim_path(paths.EXSITU_CVAE),
        flow=sim_path(paths.EXSITU_FLOW),
        train=split_file("train"),
        study=paths.GEN_TRANSFER_METRICS,
        conditions=exsitu_inference_input,
    output:
        sim_path(paths.EXSITU_INFERENCE_EXPECTED_ERROR),
    wildcard_constraints:
        name=r"[A-Za-z0-9_.-]+",
    log:
        log_path("exsitu_expected_error/{model}/{name}"),
    benchmark:
        benchmark_path("exsitu_expected_error/{model}/{name}")
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/exsitu_expected_error.py"

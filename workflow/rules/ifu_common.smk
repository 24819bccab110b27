"""Settings and path helpers of the IFU-like ex-situ dataset (rules in ifu.smk)."""

IFU = config["ifu"]
IFU_ENABLED = bool(IFU["enabled"])
IFU_MODEL = IFU["model"] or next(iter(EXSITU_MODELS))
if IFU_ENABLED and IFU_MODEL not in EXSITU_MODELS:
    raise SimBridgeConfigError(
        f"ifu.model: {IFU_MODEL!r} is not a model of the sweep {sorted(EXSITU_MODELS)} "
        "(exsitu_model.latent_dims x betas): set it to one of them or to null (the first)"
    )


def ifu_model_path(template: str) -> str:
    """A per-model path of the ideal model, moved to the IFU-trained model's directory."""
    return sim_path(template.replace(paths.EXSITU_MODEL_DIR, paths.IFU_MODEL_DIR))


def ideal_on_ifu_path(template: str) -> str:
    """A per-model evaluation path of the ideal model, moved to its evaluation on IFU maps."""
    return sim_path(template.replace(paths.EXSITU_MODEL_DIR, paths.IFU_IDEAL_ON_IFU_DIR))


def ifu_split_file(split: str) -> str:
    """The IFU-like dataset file of one split."""
    return sim_path(paths.IFU_DATASET_SPLIT).replace("{split}", split)


def ifu_settings_config() -> dict:
    """The ifu settings that determine the maps (not the switch, model or figure settings)."""
    skip = ("enabled", "model", "n_example_galaxies", "radius_bins_effective_radii",
            "evaluation_n_draws")
    return {k: v for k, v in IFU.items() if k not in skip}


def ifu_extraction_config() -> dict:
    """What the IFU-like maps depend on: the ideal maps' settings and the ifu section."""
    return {**extraction_config(), "ifu": ifu_settings_config()}


def ifu_dataset_config() -> dict:
    """The settings recorded in the IFU-like split files."""
    return {**dataset_config(), "ifu": ifu_settings_config()}


def ifu_evaluation_config() -> dict:
    """The evaluation settings of the two evaluations on the IFU-like test split."""
    return {**exsitu_evaluation_config(), "n_draws": int(IFU["evaluation_n_draws"]),
            "n_draws_key": "ifu.evaluation_n_draws"}


def ifu_outputs() -> list[str]:
    """Everything `all` builds for the IFU-like dataset (nothing when ifu.enabled is false)."""
    if not IFU_ENABLED:
        return []
    per_model = [
        ifu_model_path(t)
        for t in (
            paths.EXSITU_CVAE,
            paths.EXSITU_FLOW,
            paths.EXSITU_METRICS,
            paths.EXSITU_RESIDUALS_FIGURE,
            paths.EXSITU_COVERAGE_FIGURE,
            paths.EXSITU_CALIBRATION_FIGURE,
            paths.EXSITU_EXAMPLES_FIGURE,
        )
    ] + [
        ideal_on_ifu_path(t)
        for t in (paths.EXSITU_METRICS, paths.EXSITU_RESIDUALS_FIGURE)
    ] + [sim_path(paths.IFU_COMPARISON_METRICS), sim_path(paths.IFU_COMPARISON_FIGURE)]
    return [
        *expand(sim_path(paths.IFU_DATASET_SPLIT), split=paths.SPLITS),
        sim_path(paths.IFU_DATASET_MANIFEST),
        sim_path(paths.IFU_LEAKAGE_CHECK),
        sim_path(paths.IFU_EXAMPLE_FIGURE),
        *expand(per_model, model=IFU_MODEL),
    ]


def _evaluation_outputs(where, subcategory: str) -> dict:
    """Outputs of evaluate_exsitu_model, moved by ``where`` (a path function)."""
    figures = {
        "residuals": (paths.EXSITU_RESIDUALS_FIGURE, "exsitu_residuals.rst"),
        "residual_vs_truth": (paths.EXSITU_RESIDUAL_VS_TRUTH_FIGURE, "exsitu_residual_vs_truth.rst"),
        "coverage": (paths.EXSITU_COVERAGE_FIGURE, "exsitu_coverage.rst"),
        "calibration": (paths.EXSITU_CALIBRATION_FIGURE, "exsitu_calibration.rst"),
        "examples": (paths.EXSITU_EXAMPLES_FIGURE, "exsitu_examples.rst"),
    }
    return {
        "metrics": where(paths.EXSITU_METRICS),
        "posterior": where(paths.EXSITU_POSTERIOR),
        **{
            name: report(
                where(template),
                caption=f"../report/{caption}",
                category="Ex-situ IFU-like",
                subcategory=subcategory,
            )
            for name, (template, caption) in figures.items()
        },
    }

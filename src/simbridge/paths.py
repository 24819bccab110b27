"""Every path of the workflow's outputs, defined once (rules and package share these)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Demo universe: the simulation tree and the summary written when it is complete.
DEMO_SIM_DIR = "results/demo_universe/{simulation}"
DEMO_SUMMARY = "results/demo_universe/{simulation}.summary.json"

#: TNG galaxy selection and global properties, per snapshot and batch.
TNG_CATALOG = "results/tng/{simulation}/catalog/snap_{snapshot}.csv"
TNG_MEASURE_BATCH = "results/tng/{simulation}/galaxies/snap_{snapshot}/batch_{batch}.csv"
#: Balancing plan (views per galaxy), lineage across snapshots, split of every galaxy.
TNG_VIEW_PLAN = "results/tng/{simulation}/galaxies/view_plan.csv"
TNG_BALANCING = "results/tng/{simulation}/galaxies/balancing.json"
TNG_LINEAGE = "results/tng/{simulation}/galaxies/lineage.csv"
TNG_LINEAGE_LINKS = "results/tng/{simulation}/galaxies/lineage_links.csv"
TNG_SPLITS = "results/tng/{simulation}/galaxies/splits.csv"
#: Map extraction, per snapshot and batch (intermediate).
TNG_MAPS_BATCH = "results/tng/{simulation}/maps/batches/snap_{snapshot}/batch_{batch}.h5"
TNG_MAPS_BATCH_GALAXIES = "results/tng/{simulation}/maps/batches/snap_{snapshot}/batch_{batch}.csv"
#: The training-ready dataset: one HDF5 file per split, the manifest and the leakage check.
TNG_DATASET_SPLIT = "results/tng/{simulation}/dataset/{split}.h5"
TNG_DATASET_MANIFEST = "results/tng/{simulation}/dataset/galaxy_manifest.csv"
TNG_LEAKAGE_CHECK = "results/tng/{simulation}/dataset/leakage_check.json"
#: Report figures.
TNG_EXAMPLE_FIGURE = "results/tng/{simulation}/figures/example_maps.png"
TNG_GLOBAL_FIGURE = "results/tng/{simulation}/figures/exsitu_fraction_vs_mass.png"
TNG_BALANCING_FIGURE = "results/tng/{simulation}/figures/balancing.png"

#: The ex-situ posterior model, one directory per model of the sweep ({model}: z10_beta7e-05).
EXSITU_MODEL_DIR = "results/tng/{simulation}/exsitu_model/{model}"
EXSITU_CVAE = EXSITU_MODEL_DIR + "/cvae.pt"
EXSITU_CVAE_HISTORY = EXSITU_MODEL_DIR + "/cvae_history.csv"
EXSITU_CVAE_CURVES = EXSITU_MODEL_DIR + "/figures/cvae_training.png"
EXSITU_FLOW = EXSITU_MODEL_DIR + "/flow.pt"
EXSITU_FLOW_HISTORY = EXSITU_MODEL_DIR + "/flow_history.csv"
EXSITU_FLOW_CURVES = EXSITU_MODEL_DIR + "/figures/flow_training.png"
#: Checkpoints of a training job (not outputs: they survive a killed job and are resumed).
EXSITU_CHECKPOINTS = EXSITU_MODEL_DIR + "/checkpoints/{stage}"
EXSITU_POSTERIOR = EXSITU_MODEL_DIR + "/evaluation/posterior_test.h5"
EXSITU_METRICS = EXSITU_MODEL_DIR + "/evaluation/metrics.json"
EXSITU_RESIDUALS_FIGURE = EXSITU_MODEL_DIR + "/figures/residuals.png"
EXSITU_RESIDUAL_VS_TRUTH_FIGURE = EXSITU_MODEL_DIR + "/figures/residual_vs_truth.png"
EXSITU_COVERAGE_FIGURE = EXSITU_MODEL_DIR + "/figures/coverage.png"
EXSITU_CALIBRATION_FIGURE = EXSITU_MODEL_DIR + "/figures/calibration.png"
EXSITU_EXAMPLES_FIGURE = EXSITU_MODEL_DIR + "/figures/example_posteriors.png"
#: Comparison of the models of the sweep.
EXSITU_SWEEP_TABLE = "results/tng/{simulation}/exsitu_model/sweep.csv"
EXSITU_SWEEP_FIGURE = "results/tng/{simulation}/exsitu_model/sweep.png"
#: Inference on new galaxies, per model and input file ({name}: the input file's stem).
EXSITU_INFERENCE_DIR = EXSITU_MODEL_DIR + "/inference/{name}"
EXSITU_INFERENCE_POSTERIOR = EXSITU_INFERENCE_DIR + "/posterior.h5"
EXSITU_INFERENCE_SUMMARY = EXSITU_INFERENCE_DIR + "/summary.json"
EXSITU_INFERENCE_FIGURES = EXSITU_INFERENCE_DIR + "/figures"
EXSITU_INFERENCE_EXPECTED_ERROR = EXSITU_INFERENCE_DIR + "/expected_error.json"
#: IFU-like ex-situ dataset (config ifu): batches, split files, its model, the ideal model
#: applied to it, and the comparison of the three.
IFU_DIR = "results/tng/{simulation}/ifu"
IFU_MAPS_BATCH = IFU_DIR + "/maps/batches/snap_{snapshot}/batch_{batch}.h5"
IFU_MAPS_BATCH_GALAXIES = IFU_DIR + "/maps/batches/snap_{snapshot}/batch_{batch}.csv"
IFU_DATASET_SPLIT = IFU_DIR + "/dataset/{split}.h5"
IFU_DATASET_MANIFEST = IFU_DIR + "/dataset/galaxy_manifest.csv"
IFU_LEAKAGE_CHECK = IFU_DIR + "/dataset/leakage_check.json"
IFU_EXAMPLE_FIGURE = IFU_DIR + "/figures/example_ifu_maps.png"
IFU_MODEL_DIR = IFU_DIR + "/exsitu_model/{model}"
IFU_IDEAL_ON_IFU_DIR = IFU_DIR + "/ideal_model_on_ifu/{model}"
IFU_COMPARISON_METRICS = IFU_DIR + "/comparison/{model}/metrics.json"
IFU_COMPARISON_FIGURE = IFU_DIR + "/comparison/{model}/comparison.png"

#: Abundances branch (NIHAO): demo suite, extraction, superpositions, two-step SBI, evaluation.
NIHAO_DEMO_DIR = "results/nihao/demo_suite"
NIHAO_DEMO_SUMMARY = "results/nihao/demo_suite.summary.json"
ABUNDANCES_DIR = "results/nihao/abundances"
ABUNDANCE_BATCH = ABUNDANCES_DIR + "/batches/batch_{batch}.h5"
ABUNDANCE_BATCH_ERRORS = ABUNDANCES_DIR + "/batches/batch_{batch}.errors.csv"
ABUNDANCE_HISTOGRAMS = ABUNDANCES_DIR + "/building_blocks.h5"
ABUNDANCE_BLOCKS = ABUNDANCES_DIR + "/building_blocks.csv"
ABUNDANCE_ERRORS = ABUNDANCES_DIR + "/errors.csv"
ABUNDANCE_PLANES_FIGURE = ABUNDANCES_DIR + "/figures/abundance_planes.png"
ABUNDANCE_SPLIT = ABUNDANCES_DIR + "/dataset/{split}.h5"
ABUNDANCE_DISJOINTNESS = ABUNDANCES_DIR + "/dataset/disjointness_check.json"
ABUNDANCE_MODELS = ABUNDANCES_DIR + "/models"
ABUNDANCE_TUNING_JOURNAL = ABUNDANCE_MODELS + "/tuning/journal.log"
ABUNDANCE_TUNING_WORKER = ABUNDANCE_MODELS + "/tuning/worker_{worker}.json"
ABUNDANCE_BEST_SETTINGS = ABUNDANCE_MODELS + "/tuning/best_settings.json"
ABUNDANCE_MODEL = ABUNDANCE_MODELS + "/{estimator}.pt"
ABUNDANCE_CLASSIFIER_CHECKPOINTS = ABUNDANCE_MODELS + "/checkpoints/nsub_classifier"
ABUNDANCE_EVALUATION = ABUNDANCE_MODELS + "/evaluation"
ABUNDANCE_METRICS = ABUNDANCE_EVALUATION + "/metrics.json"
ABUNDANCE_FIGURE = ABUNDANCE_EVALUATION + "/{figure}.png"

#: Generalization branch: universes, spectra per domain, features, distances, models, errors.
GEN_DIR = "results/generalization"
GEN_UNIVERSE_DIR = GEN_DIR + "/universes/{universe}"
GEN_UNIVERSE_SUMMARY = GEN_DIR + "/universes/{universe}.summary.json"
GEN_CATALOG = GEN_DIR + "/catalogs/{universe}.csv"
GEN_SPECTRA = GEN_DIR + "/spectra/{domain}.h5"
GEN_SPECTRA_MANIFEST = GEN_DIR + "/spectra/{domain}.csv"
GEN_OBSERVED_SPECTRA = GEN_DIR + "/observed/spectra.h5"
GEN_OBSERVED_MANIFEST = GEN_DIR + "/observed/manifest.csv"
GEN_FEATURES = GEN_DIR + "/features.json"
GEN_DISTANCES = GEN_DIR + "/distances.json"
#: One model per training domain and kind (random_forest: pickle, cnn: torch payload).
GEN_RF_MODEL = GEN_DIR + "/models/random_forest/{domain}.pkl"
GEN_CNN_MODEL = GEN_DIR + "/models/cnn/{domain}.pt"
GEN_CNN_HISTORY = GEN_DIR + "/models/cnn/{domain}_history.csv"
GEN_CNN_CHECKPOINTS = GEN_DIR + "/models/cnn/checkpoints/{domain}"
GEN_ERRORS = GEN_DIR + "/errors/{kind}/{domain}.json"
GEN_METRICS = GEN_DIR + "/metrics.json"
GEN_ERROR_DISTANCE_FIGURE = GEN_DIR + "/figures/error_vs_distance_{kind}.png"
GEN_DISTANCE_MATRIX_FIGURE = GEN_DIR + "/figures/distance_matrices.png"
GEN_HELDOUT_FIGURE = GEN_DIR + "/figures/heldout_predicted_vs_measured_{kind}.png"
GEN_SPECTRA_FIGURE = GEN_DIR + "/figures/example_spectra.png"
#: Generalization of the ex-situ map model (generalization.exsitu_transfer)
GEN_TRANSFER_DIR = GEN_DIR + "/exsitu_transfer"
GEN_TRANSFER_UNIVERSE_DIR = GEN_TRANSFER_DIR + "/universes/{transfer}"
GEN_TRANSFER_UNIVERSE_SUMMARY = GEN_TRANSFER_DIR + "/universes/{transfer}.summary.json"
GEN_TRANSFER_CATALOG = GEN_TRANSFER_DIR + "/maps/{transfer}_catalog.csv"
GEN_TRANSFER_MAPS = GEN_TRANSFER_DIR + "/maps/{transfer}.h5"
GEN_TRANSFER_MANIFEST = GEN_TRANSFER_DIR + "/maps/{transfer}.csv"
GEN_TRANSFER_MODEL_DIR = GEN_TRANSFER_DIR + "/{model}"
GEN_TRANSFER_METRICS = GEN_TRANSFER_MODEL_DIR + "/metrics.json"
GEN_TRANSFER_APPLIED = GEN_TRANSFER_MODEL_DIR + "/applied"
GEN_TRANSFER_FIGURE = GEN_TRANSFER_MODEL_DIR + "/error_vs_distance.png"

#: dm2gal branch (CAMELS): paired demo suite, voxel grids per run, run splits, HOD, models.
CAMELS_DEMO_DIR = "results/camels/demo_suite"
CAMELS_DEMO_SUMMARY = "results/camels/demo_suite.summary.json"
DM2GAL_DIR = "results/camels/dm2gal"
DM2GAL_GRID = DM2GAL_DIR + "/voxels/{run}.h5"
DM2GAL_SPLITS = DM2GAL_DIR + "/dataset/splits.json"
DM2GAL_SPLIT_CHECK = DM2GAL_DIR + "/dataset/split_check.json"
DM2GAL_HOD = DM2GAL_DIR + "/hod/hod.json"
DM2GAL_MODEL = DM2GAL_DIR + "/models/{phase}_{arch}.pt"
DM2GAL_HISTORY = DM2GAL_DIR + "/models/{phase}_{arch}_history.csv"
DM2GAL_CHECKPOINTS = DM2GAL_DIR + "/models/checkpoints/{phase}_{arch}"
DM2GAL_METRICS = DM2GAL_DIR + "/evaluation/metrics.json"
DM2GAL_PREDICTIONS = DM2GAL_DIR + "/evaluation/predictions.h5"
DM2GAL_FIGURE = DM2GAL_DIR + "/figures/{figure}.png"

#: realism branch: demo universes, image sets (mocks, archetypes, empty sky), PixelCNNs, LLRs.
REALISM_DIR = "results/realism"
REALISM_UNIVERSE_DIR = REALISM_DIR + "/universes/{universe}"
REALISM_UNIVERSE_SUMMARY = REALISM_DIR + "/universes/{universe}.summary.json"
REALISM_SET = REALISM_DIR + "/images/{imageset}.h5"
REALISM_SET_MANIFEST = REALISM_DIR + "/images/{imageset}.csv"
REALISM_MODEL = REALISM_DIR + "/models/{model}.pt"
REALISM_HISTORY = REALISM_DIR + "/models/{model}_history.csv"
REALISM_CHECKPOINTS = REALISM_DIR + "/models/checkpoints/{model}"
REALISM_SCORES = REALISM_DIR + "/evaluation/scores.h5"
REALISM_METRICS = REALISM_DIR + "/evaluation/metrics.json"
REALISM_FIGURE = REALISM_DIR + "/figures/{figure}.png"

#: Dataset splits, in the order they are written.
SPLITS = ("train", "validation", "test")

LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"


def snapshot_tag(snapshot: int) -> str:
    """Three-digit snapshot label as in the archive's file names (99 -> '099')."""
    return f"{int(snapshot):03d}"


def batch_tag(batch: int) -> str:
    """Four-digit batch label."""
    return f"{int(batch):04d}"


def tng_base_path(config: dict[str, Any]) -> Path:
    """illustris_python basePath: the configured archive (``~`` expanded), or the demo
    universe's output/."""
    base = config["tng"]["base_path"]
    if base is not None:
        return Path(base).expanduser()
    return Path(DEMO_SIM_DIR.format(simulation=config["tng"]["simulation_name"])) / "output"

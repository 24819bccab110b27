"""Rule dm2gal_splits: whole runs to train/validation/test by their place in the hypercube."""

from simbridge.dataset.subboxes import assign_run_splits
from simbridge.errors import SimBridgeInputError
from simbridge.io import write_json_atomic
from simbridge.logs import job_logging
from simbridge.sims.camels import parameter_table_path, read_parameter_table
from simbridge.sims.camels_demo import PARAMETER_RANGES

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    cfg = sm.params.settings
    camels, splits_cfg = cfg["camels"], cfg["dm2gal"]["splits"]
    table_path = parameter_table_path(sm.params.base_path, camels["suite"], camels["set"],
                                      camels["box"])
    table = read_parameter_table(table_path)
    runs = [p.rsplit("/", 1)[1].removesuffix(".h5") for p in sm.input.grids]
    missing = [r for r in runs if r not in table]
    if missing:
        raise SimBridgeInputError(f"runs {missing} are not in the parameter table", table_path,
                                  "use the CosmoAstroSeed file of the same suite and set")
    splits = assign_run_splits({r: table[r] for r in runs}, PARAMETER_RANGES,
                               splits_cfg["validation_runs"], splits_cfg["test_runs"])
    splits["parameters"] = {r: table[r] for r in runs}
    write_json_atomic(sm.output[0], splits)

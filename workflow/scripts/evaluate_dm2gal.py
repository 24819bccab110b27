"""Rule evaluate_dm2gal: metrics.json and the predicted fields of the test runs."""

import json

import h5py
import torch

from simbridge.io import atomic_output, write_json_atomic
from simbridge.logs import job_logging
from simbridge.models.dm2gal.evaluate import evaluate_dm2gal

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    cfg = sm.params.settings
    settings = cfg["dm2gal"]
    splits = json.loads(open(sm.input.splits).read())
    hod = json.loads(open(sm.input.hod).read())
    models = {p.rsplit("/", 1)[1].removesuffix(".pt"): p for p in sm.input.models}
    classifiers = {a: models[f"classifier_{a}"] for a in settings["classifiers"]}
    metrics, arrays = evaluate_dm2gal(list(sm.input.grids), splits, classifiers,
                                      models["regressor_r2unet"], hod, settings, cfg["seed"])
    with atomic_output(sm.output.predictions) as tmp, h5py.File(tmp, "w") as fh:
        for key, value in arrays.items():
            fh.create_dataset(key, data=value)
        fh.attrs["units"] = "galaxies per voxel (fields), probability (classifiers)"
    write_json_atomic(sm.output.metrics, metrics)

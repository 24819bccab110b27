"""Rule exsitu_expected_error: expected per-pixel error of the model on an inference input."""

import torch

from simbridge.logs import job_logging
from simbridge.models.exsitu_transfer import write_expected_error

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(max(1, sm.threads))
    write_expected_error(sm.input.cvae, sm.input.flow, sm.input.train, sm.input.study,
                         sm.input.conditions, sm.output[0],
                         device=sm.config["exsitu_model"]["device"])

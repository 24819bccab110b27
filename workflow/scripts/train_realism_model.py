"""Rule train_realism_model: one PixelCNN on the observed set or on its archetypes."""

import torch

from simbridge.logs import job_logging
from simbridge.models.realism.training import train_realism_model

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    torch.set_num_threads(int(sm.params.pixelcnn.get("threads", 1)))
    train_realism_model(sm.wildcards.model, sm.input.images, sm.input.manifest,
                        sm.params.pixelcnn, int(sm.params.seed), sm.params.checkpoint_dir,
                        sm.output.model, sm.output.history,
                        init_model=sm.input.get("init"),
                        archetype_images_h5=sm.input.get("images_archetype"))

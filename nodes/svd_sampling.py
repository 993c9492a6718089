"""AnimateLCM-SVD-xt sampling: its distilled noise levels as SIGMAS for core's SamplerCustom.

Everything else is core, but for the AnimateLCM UNet weights (put into the stock SVD-xt MODEL by ALCM_LoadSVDUNet):
ImageOnlyCheckpointLoader loads SVD-xt (its own v-prediction EDM model sampling), SVD_img2vid_Conditioning makes
the conditioning (fps 7, motion bucket 80-127, augmentation 0.02 for this model), VideoLinearCFGGuidance the
per-frame guidance (min 1.0, cfg 1.0-1.5); the sampler is ALCM_Sampler (denoise, then re-noise with fresh noise; core's
"lcm" works too, with a noise that changed in ComfyUI 0.7.0). At cfg 1 core evaluates the conditioned branch only: one
UNet pass per step.
"""

import torch

from comfy_api.latest import io

from ..patching.svd_weights import require_svd
from ..samplers.svd_schedule import MAX_STEPS, svd_sigmas


class SVDScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_SVDScheduler",
            display_name="AnimateLCM SVD Scheduler",
            category="AnimateLCM/SVD",
            description="The AnimateLCM-SVD-xt noise levels (e.g. 700, 128.56, 13.68, 0.497 for 4 steps) as sigmas "
                        "for SamplerCustom with the AnimateLCM Sampler (or core's 'lcm').",
            inputs=[
                io.Model.Input("model", tooltip="The AnimateLCM-SVD-xt model (checked to be an SVD model)."),
                io.Int.Input("steps", default=4, min=1, max=MAX_STEPS,
                             tooltip="1-8; 4 is the usual balance of speed and quality."),
            ],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, model: io.Model.Type, steps: int) -> io.NodeOutput:
        require_svd(model, "ALCM_SVDScheduler", "load SVD-xt with Image Only Checkpoint Loader, put the "
                    "AnimateLCM-SVD-xt UNet in it with AnimateLCM Load SVD-xt UNet and connect that MODEL here; for "
                    "AnimateLCM on SD1.5 use AnimateLCM Scheduler (ALCM_Scheduler)")
        return io.NodeOutput(torch.tensor(svd_sigmas(steps), dtype=torch.float32))

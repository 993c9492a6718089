"""A MODEL's sampling built from one `NoiseSchedule` (samplers/schedule.py), stored once on the MODEL with it.

The schedule is an attachment of the MODEL, and the `model_sampling` object patch is always made from it, so a later
node (ALCM_ImageToVideo's beta_end) changes the stored schedule and rebuilds the sampling from it rather than
re-deriving it from the user's choice. The LCM boundary conditions are core's own `LCM` model sampling (the same
constants as samplers/schedule.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import comfy.model_patcher
import comfy.model_sampling
from comfy_extras.nodes_model_advanced import LCM

from ..samplers.schedule import TRAIN_TIMESTEPS, NoiseSchedule

KEY = "animatelcm_noise_schedule"
# samplers/schedule.py names the beta schedules as diffusers does; ComfyUI's "sqrt_linear" is the true linear one.
COMFY_BETA_SCHEDULES = {"linear": "sqrt_linear", "scaled_linear": "linear"}


def comfy_model_sampling(schedule: NoiseSchedule):
    """ComfyUI's discrete-time model sampling of an epsilon model on `schedule`."""
    prediction = LCM if schedule.lcm_boundary else comfy.model_sampling.EPS

    class AnimateLCMModelSampling(comfy.model_sampling.ModelSamplingDiscrete, prediction):
        pass

    settings = {"beta_schedule": COMFY_BETA_SCHEDULES[schedule.betas], "linear_start": schedule.beta_start,
                "linear_end": schedule.beta_end, "timesteps": TRAIN_TIMESTEPS}
    # ModelSamplingDiscrete reads only `sampling_settings` from the model config it is given.
    return AnimateLCMModelSampling(SimpleNamespace(sampling_settings=settings))


def set_noise_schedule(model: comfy.model_patcher.ModelPatcher, schedule: NoiseSchedule) -> None:
    """Stores `schedule` on `model` (a clone the caller owns) and samples with it."""
    model.set_attachments(KEY, schedule)
    model.add_object_patch("model_sampling", comfy_model_sampling(schedule))


def noise_schedule(model: comfy.model_patcher.ModelPatcher) -> NoiseSchedule | None:
    """The schedule the pack stored on `model`, None when it stored none."""
    return model.get_attachment(KEY)

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


class EpsilonSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    """An epsilon model on a NoiseSchedule."""


class ConsistencySampling(comfy.model_sampling.ModelSamplingDiscrete, LCM):
    """An epsilon model on a NoiseSchedule, with LCM's boundary conditions."""


def comfy_model_sampling(schedule: NoiseSchedule) -> EpsilonSampling | ConsistencySampling:
    """ComfyUI's discrete-time model sampling of an epsilon model on `schedule`."""
    sampling_class = ConsistencySampling if schedule.lcm_boundary else EpsilonSampling
    settings = {"beta_schedule": COMFY_BETA_SCHEDULES[schedule.betas], "linear_start": schedule.beta_start,
                "linear_end": schedule.beta_end, "timesteps": TRAIN_TIMESTEPS}
    # ModelSamplingDiscrete reads only `sampling_settings` from the model config it is given.
    return sampling_class(SimpleNamespace(sampling_settings=settings))


def set_noise_schedule(model: comfy.model_patcher.ModelPatcher, schedule: NoiseSchedule) -> None:
    """Stores `schedule` on `model` (a clone the caller owns) and samples with it."""
    model.set_attachments(KEY, schedule)
    model.add_object_patch("model_sampling", comfy_model_sampling(schedule))


def noise_schedule(model: comfy.model_patcher.ModelPatcher) -> NoiseSchedule | None:
    """The schedule the pack stored on `model`, None when it stored none."""
    return model.get_attachment(KEY)


def timestep_sampling(model: comfy.model_patcher.ModelPatcher):
    """The MODEL's model sampling, checked before any sampling to be one the AnimateLCM timesteps index: the schedule
    the pack stored (when it stored one), on the full 1000-step table."""
    sampling = model.get_model_object("model_sampling")
    if noise_schedule(model) is not None and not isinstance(sampling, (EpsilonSampling, ConsistencySampling)):
        raise ValueError("the MODEL's noise schedule was replaced after ALCM_ApplyMotionModel (for example by a "
                         "ModelSamplingDiscrete node), so the AnimateLCM timesteps would miss the schedule the motion "
                         "model was distilled on: remove that node and choose the schedule with ALCM_ApplyMotionModel's "
                         "beta_schedule")
    table = len(getattr(sampling, "sigmas", ()))
    if table != TRAIN_TIMESTEPS:
        raise ValueError(f"the MODEL samples on a {table}-step table (a ModelSamplingDiscrete node set to lcm makes a "
                         f"50-step one), but the AnimateLCM timesteps index the {TRAIN_TIMESTEPS}-step schedule: remove "
                         f"that node (ALCM_ApplyMotionModel sets the schedule), or sample with core's KSampler")
    return sampling

"""AnimateLCM sampling on a MODEL: the faithful schedule as core's SIGMAS, the LCM update (samplers/lcm.py) as its
SAMPLER."""

import torch

import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..samplers.lcm import fresh_noise_sampler, sample_animatelcm
from ..samplers.schedule import I2V_ORIGINAL_STEPS, T2V_ORIGINAL_STEPS, lcm_timesteps
from .model_sampling import noise_schedule, timestep_sampling
from .motion_injection import applied_motion_model
from .noise import free_noise_steps


def animatelcm_sigmas(model: comfy.model_patcher.ModelPatcher, steps: int, original_steps: int = 0,
                      denoise: float = 1.0) -> torch.Tensor:
    """Noise levels of the LCM timesteps on the model's own schedule (the motion model's, once applied), on the
    grid that schedule names, else the motion model's own."""
    if original_steps == 0:
        schedule, motion = noise_schedule(model), applied_motion_model(model)
        if schedule is not None and schedule.original_steps:
            original_steps = schedule.original_steps
        elif motion is not None and motion.loaded.format.has_image_encoder:
            original_steps = I2V_ORIGINAL_STEPS
        else:
            original_steps = T2V_ORIGINAL_STEPS
    timesteps = torch.tensor(lcm_timesteps(steps, original_steps, denoise))
    # The discrete schedule's own table (as core's schedulers read it), so the model sees exactly these timesteps.
    sigmas = timestep_sampling(model).sigmas[timesteps].float().cpu()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _sample_animatelcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    if noise_sampler is None:  # the seed's fresh noise, under FreeNoise rescheduled as the initial noise was
        seed = extra_args.get("seed")
        noise_sampler = free_noise_steps(extra_args.get("model_options", {}), fresh_noise_sampler(x, seed), seed)
    return sample_animatelcm(model, x, sigmas, extra_args, callback, disable, noise_sampler)


def animatelcm_sampler() -> comfy.samplers.KSAMPLER:
    return comfy.samplers.KSAMPLER(_sample_animatelcm)


def sample_video(model, positive, negative, latent_image: dict, seed: int, steps: int, cfg: float,
                 denoise: float) -> dict:
    """ALCM_KSampler's run: core's noise for the seed, the AnimateLCM schedule and update, previews and a progress
    bar; the LATENT back with its other entries kept."""
    latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
    noise = comfy.sample.prepare_noise(latent, seed, latent_image.get("batch_index"))
    samples = comfy.sample.sample_custom(
        model, noise, cfg, animatelcm_sampler(), animatelcm_sigmas(model, steps, 0, denoise), positive, negative,
        latent, noise_mask=latent_image.get("noise_mask"), callback=latent_preview.prepare_callback(model, steps),
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return {**latent_image, "samples": samples}

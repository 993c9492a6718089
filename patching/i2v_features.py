"""AnimateLCM-I2V: animate a still image. ALCM_ImageToVideo attaches the image to a MODEL with an I2V motion model.

The image's VAE latent goes through the motion model's image encoder (motion_models/image_encoder.py) once per UNet
call, with each frame's position within the clip or context window; the four feature maps reach the UNet through
`transformer_options` and the `ImageFeatureLayer`s the motion-model injection put in the down blocks. The same
features go to every cond/uncond chunk. The sampler starts from pure noise: the image steers only through the adapter.
"""

from __future__ import annotations

from functools import partial

import torch

import comfy.model_patcher
import comfy.utils
from comfy.patcher_extension import WrappersMP

from .model_sampling import noise_schedule, set_noise_schedule
from .motion_injection import IMAGE_FEATURES, MotionModelPatcher, applied_motion_model

KEY = "animatelcm_i2v"


def _with_image_features(motion: MotionModelPatcher, latent: torch.Tensor, motion_scale: float, executor, x,
                         timesteps, context, y, control, transformer_options, **kwargs):
    """DIFFUSION_MODEL wrapper: the adapter's features for this call's frames, repeated for each cond/uncond chunk."""
    chunks = len(transformer_options.get("cond_or_uncond") or [0])
    positions = torch.arange(x.shape[0] // chunks, device=x.device)  # within the window, as the motion module counts
    features = motion.loaded.model.image_encoder(latent.to(x.device, x.dtype), positions, motion_scale)
    options = {**transformer_options, IMAGE_FEATURES: [f.repeat(chunks, 1, 1, 1) for f in features]}
    return executor(x, timesteps, context, y, control, options, **kwargs)


def _check_latent_size(latent: torch.Tensor, executor, noise, *args, **kwargs):
    """OUTER_SAMPLE wrapper: refuse a latent of another size than the image's before any model is loaded."""
    if tuple(noise.shape[-2:]) != tuple(latent.shape[-2:]):
        raise ValueError(f"the latent is {noise.shape[-1] * 8}x{noise.shape[-2] * 8} px but ALCM_ImageToVideo "
                         f"encoded the image at {latent.shape[-1] * 8}x{latent.shape[-2] * 8}: use the LATENT it "
                         f"returns (or the same width and height)")
    return executor(noise, *args, **kwargs)


def encode_image(vae, image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The first image, scaled to cover width x height and center-cropped (as core's SVD conditioning does), VAE
    encoded: the raw latent [1, 4, height / 8, width / 8]."""
    pixels = comfy.utils.common_upscale(image[:1, :, :, :3].movedim(-1, 1), width, height, "bilinear", "center")
    return vae.encode(pixels.movedim(1, -1))


def i2v_motion_model(model: comfy.model_patcher.ModelPatcher) -> MotionModelPatcher:
    motion = applied_motion_model(model)
    if motion is None or motion.loaded.model.image_encoder is None:
        found = ("no motion model is applied" if motion is None else
                 f"the applied motion model ({motion.loaded.format.kind}) has no image encoder")
        raise ValueError(f"ALCM_ImageToVideo needs a MODEL with an AnimateLCM-I2V motion model applied (a file with "
                         f"an image encoder, such as AnimateLCM_sd15_i2v.ckpt), but {found}: load the I2V motion "
                         f"model in ALCM_LoadMotionModel and apply it with ALCM_ApplyMotionModel")
    return motion


def attach_image(model: comfy.model_patcher.ModelPatcher, latent: torch.Tensor, motion_scale: float,
                 beta_end: float) -> comfy.model_patcher.ModelPatcher:
    """A clone of an I2V-animated model that feeds `latent` (model space: VAE latent x 0.18215) to the adapter."""
    motion = i2v_motion_model(model)
    m = model.clone()
    m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, KEY, partial(_with_image_features, motion, latent, motion_scale))
    m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, KEY, partial(_check_latent_size, latent))
    set_noise_schedule(m, noise_schedule(model).with_beta_end(beta_end))
    return m

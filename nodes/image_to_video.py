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
from comfy_api.latest import io

from .injection import (I2V_BETA_END, IMAGE_FEATURES, MotionModelPatcher, applied_beta_schedule, applied_motion_model,
                        motion_model_sampling)

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
    m.add_object_patch("model_sampling", motion_model_sampling(m, motion, applied_beta_schedule(model), beta_end))
    return m


class ImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_ImageToVideo",
            display_name="AnimateLCM Image to Video",
            category="AnimateLCM",
            description="Animates a still image with an AnimateLCM-I2V motion model in 2-4 steps at cfg 1: returns "
                        "the model conditioned on the image and an empty latent of the clip's frames.",
            inputs=[
                io.Model.Input("model", tooltip="With the AnimateLCM-I2V motion model applied."),
                io.Vae.Input("vae"),
                io.Image.Input("image", tooltip="The still to animate (the first image of a batch)."),
                io.Int.Input("frames", default=16, min=1, max=64, tooltip="16: what the model was trained on."),
                io.Int.Input("width", default=512, min=64, max=2048, step=8),
                io.Int.Input("height", default=512, min=64, max=2048, step=8),
                io.Float.Input("motion_scale", default=0.8, min=0.0, max=2.0, step=0.05,
                               tooltip="How much the frames may differ: 0 is a still video, up to about 1.5 more "
                                       "motion but less stable."),
                io.Float.Input("beta_end", default=I2V_BETA_END, min=0.012, max=0.016, step=0.0005,
                               tooltip="Last beta of the linear noise schedule (AnimateLCM-I2V: 0.014); the "
                                       "scaled_linear (SD1.5) schedule keeps its own."),
            ],
            outputs=[io.Model.Output(), io.Latent.Output()],
        )

    @classmethod
    def validate_inputs(cls, width: int, height: int) -> bool | str:
        if width % 8 or height % 8:
            return f"width and height must be multiples of 8, got {width}x{height}"
        return True

    @classmethod
    def execute(cls, model, vae, image, frames: int, width: int, height: int, motion_scale: float,
                beta_end: float) -> io.NodeOutput:
        i2v_motion_model(model)  # before the VAE runs
        latent = model.get_model_object("latent_format").process_in(encode_image(vae, image, width, height).float())
        m = attach_image(model, latent, motion_scale, beta_end)
        empty = torch.zeros(frames, latent.shape[1], height // 8, width // 8)
        return io.NodeOutput(m, {"samples": empty})

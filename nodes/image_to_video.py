"""ALCM_ImageToVideo: animate a still image with an AnimateLCM-I2V motion model (patching/i2v_features.py)."""

import torch

from comfy_api.latest import io

from ..patching.i2v_features import attach_image, encode_image, i2v_motion_model
from ..samplers.schedule import I2V_BETA_END
from .validation import outside_declared_range, refuse


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
                                       "motion but less stable. (AnimateLCM-I2V's own knob: it scales the frame "
                                       "positions the image encoder sees; ALCM_ApplyMotionModel's motion_scale "
                                       "scales the motion module.)"),
                io.Float.Input("beta_end", default=I2V_BETA_END, min=0.012, max=0.016, step=0.0005,
                               tooltip="Last beta of the linear noise schedule (AnimateLCM-I2V: 0.014); the "
                                       "scaled_linear (SD1.5) schedule keeps its own."),
            ],
            outputs=[io.Model.Output(), io.Latent.Output()],
        )

    @classmethod
    def validate_inputs(cls, width: int, height: int) -> bool | str:
        return cls.problem(width, height) or True

    @classmethod
    def problem(cls, width: int, height: int, frames: int | None = None) -> str | None:
        problem = outside_declared_range(cls, width=width, height=height, frames=frames)
        if problem is None and None not in (width, height) and (width % 8 or height % 8):
            problem = f"width and height must be multiples of 8, got {width}x{height}"
        return problem

    @classmethod
    def execute(cls, model, vae, image, frames: int, width: int, height: int, motion_scale: float,
                beta_end: float) -> io.NodeOutput:
        refuse(cls.problem(width, height, frames))
        i2v_motion_model(model)  # before the VAE runs
        latent = model.get_model_object("latent_format").process_in(encode_image(vae, image, width, height).float())
        m = attach_image(model, latent, motion_scale, beta_end)
        empty = torch.zeros(frames, latent.shape[1], height // 8, width // 8)
        return io.NodeOutput(m, {"samples": empty})

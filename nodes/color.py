"""Colour correction of generated frames towards a source image, as the official AnimateLCM-I2V code does."""

import torch

from comfy_api.latest import io

from ..video.color import match_color


class ColorMatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_ColorMatch",
            display_name="AnimateLCM Color Match",
            category="AnimateLCM",
            description="Pulls each frame's colours towards a source image, as the official AnimateLCM-I2V code "
                        "does after decoding: saturation and brightness to the image's means, hue 3% of the way. "
                        "Corrects colour drift after image-to-video, or towards any image after text-to-video.",
            inputs=[
                io.Image.Input("images", tooltip="The frames to correct, e.g. the decoded video."),
                io.Image.Input("reference",
                               tooltip="The source image whose colours the frames should keep (the I2V input "
                                       "image). Only its mean hue, saturation and brightness are used, so any size "
                                       "works; of a batch, the first image is used."),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="1 = the official correction; 0 = the frames unchanged; in between, that "
                                       "fraction of the shift."),
            ],
            outputs=[io.Image.Output(tooltip="The corrected frames, same size; an alpha channel passes through.")],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, reference: torch.Tensor, strength: float) -> io.NodeOutput:
        if images.shape[0] == 0:
            raise ValueError("ALCM_ColorMatch: `images` is an empty batch, so there are no frames to correct: "
                             "connect the decoded frames (e.g. VAE Decode's IMAGE) to `images`.")
        if reference.shape[0] == 0:
            raise ValueError("ALCM_ColorMatch: `reference` is an empty batch: connect the source image (e.g. the "
                             "Load Image used for image-to-video) to `reference`.")
        try:
            return io.NodeOutput(match_color(images, reference, strength))
        except ValueError as error:
            raise ValueError(f"ALCM_ColorMatch: {error}") from None

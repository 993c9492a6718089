"""The networks the trainer works on: ComfyUI's SD1.5 `UNetModel` (spatial weights), the pack's `MotionModel`
(temporal weights), put together as the nodes put them together, and a text encoder.

The motion layers go into the UNet with the same `insert_motion_layers` the nodes use, so a motion module trained
here runs in ComfyUI exactly as it ran in training. One UNet instance serves the teacher, the online and the target
model: they differ only in which motion model is inserted and which LoRA weights are active (training/lora.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

import comfy.ops
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, UNetModel

from ..motion_models.motion_module import MotionModel
from ..patching.motion_injection import (IMAGE_FEATURES, MOTION_LAYER_PATCHES, ImageFeatureLayer,
                                         MotionModuleLayer, insert_motion_layers, remove_motion_layers)
from ..patching.motion_strength import MotionStrength

# A reduced-width SD1.5 UNet in pixel space for the small-scale proof: four levels of two ResBlocks, cross-attention
# on the two middle levels, a mid block; 64 channels at every level, 8 heads, as ComfyUI builds every SD1.5 UNet.
# At least 64: ComfyUI's GroupNorm has 32 groups, and with 32 channels its output norm normalises each channel on its
# own, so the UNet cannot predict the per-channel mean of the noise and every sample gets a random colour cast.
TINY_UNET = {
    "image_size": 32, "in_channels": 3, "out_channels": 3, "model_channels": 64, "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 1, 1, 1], "transformer_depth": [0, 0, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0], "transformer_depth_middle": 1,
    "num_heads": 8, "context_dim": 64, "use_spatial_transformer": True, "legacy": False,
    "use_linear_in_transformer": False,
}


def motion_width(unet_config: dict) -> tuple[int, ...]:
    """Channels per UNet level, highest resolution first: the widths of the motion modules that fit the UNet."""
    return tuple(unet_config["model_channels"] * m for m in unet_config["channel_mult"])


def reset_parameters(module: nn.Module) -> nn.Module:
    """Draws fresh initial weights: ComfyUI's layer classes skip initialisation (they expect a checkpoint)."""
    for layer in module.modules():
        for base in (nn.Linear, nn.Conv2d, nn.Conv1d, nn.GroupNorm, nn.LayerNorm, nn.Embedding):
            if isinstance(layer, base):
                base.reset_parameters(layer)
                break
    return module


def new_unet(config: dict, device: torch.device | str | None = None) -> UNetModel:
    """A freshly initialised ComfyUI UNet of `config` (e.g. `TINY_UNET`), float32."""
    unet = UNetModel(**config, dtype=torch.float32, device=device, operations=comfy.ops.disable_weight_init)
    return reset_parameters(unet)


def new_motion_model(width: tuple[int, ...], device: torch.device | str | None = None,
                     pe_length: int | None = None) -> MotionModel:
    """A fresh motion model with a mid block and zero output projections: inserted into a UNet it changes nothing
    until it is trained (the paper's inflation). AnimateLCM's layout (encoding computed, not saved) by default;
    `pe_length` saves the encoding as AnimateDiff does (32 frames in v2/v3)."""
    motion = MotionModel(width, mid_block=True, pe_length=pe_length, device=device)
    for _, transformer in motion.in_unet_order():
        nn.init.zeros_(transformer.proj_out.weight)
        nn.init.zeros_(transformer.proj_out.bias)
    return motion


class WordEncoder(nn.Module):
    """A text encoder for a fixed vocabulary: one learned embedding per word plus one per position; the empty caption
    (classifier-free guidance's unconditional input) is all padding. Stands in for CLIP in the small proof."""

    def __init__(self, vocabulary: tuple[str, ...], dim: int, length: int = 8):
        super().__init__()
        self.vocabulary = {word: i + 1 for i, word in enumerate(vocabulary)}  # 0 = padding
        self.length = length
        self.words = nn.Embedding(len(vocabulary) + 1, dim)
        self.positions = nn.Embedding(length, dim)

    def tokens(self, captions: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(captions), self.length, dtype=torch.long)
        for row, caption in enumerate(captions):
            words = caption.split()
            if len(words) > self.length:
                raise ValueError(f"caption {caption!r} has more than {self.length} words")
            unknown = [w for w in words if w not in self.vocabulary]
            if unknown:
                raise ValueError(f"caption {caption!r} has words outside the vocabulary: {unknown}")
            ids[row, : len(words)] = torch.tensor([self.vocabulary[w] for w in words])
        return ids

    def forward(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokens(captions).to(self.words.weight.device)
        return self.words(ids) + self.positions.weight


def _checkpointed(run):
    """A forward_timestep_embed handler that recomputes the layer's activations in backward."""

    def handler(layer, x, *args):
        if not torch.is_grad_enabled():
            return run(layer, x, *args)
        return torch.utils.checkpoint.checkpoint(run, layer, x, *args, use_reentrant=False)

    return handler


@dataclass
class VideoUNet:
    """Runs ComfyUI's UNet on clips [B, F, C, H, W], as an image model (no motion model: every frame on its own) or
    as a video model (the motion model's layers inserted where the nodes insert them).

    `gradient_checkpointing` recomputes the motion layers' activations in backward (through the forward_timestep_embed
    patch that runs them), and the ResBlocks' when their weights train (ComfyUI's own `use_checkpoint`, which fails
    on frozen weights). ComfyUI's spatial transformer blocks have no checkpointing: their activations are kept.
    """

    unet: UNetModel
    gradient_checkpointing: bool = False

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                 motion: MotionModel | None = None, adapter=None) -> torch.Tensor:
        """x: [B, F, C, H, W]; timesteps: [B] integer; context: [B, T, D]. Returns the noise prediction like x.
        `adapter`: a bound adapter (training/adapters.py): its ControlNet output or I2V features go in where ComfyUI
        puts them (the UNet's `control` argument; the image-feature layers, which need a motion model with an
        image encoder)."""
        clips, frames = x.shape[:2]
        if motion is None:
            remove_motion_layers(self.unet)
        elif not self._holds(motion):
            insert_motion_layers(self.unet, motion, MotionStrength())
        if self.gradient_checkpointing:
            for module in self.unet.modules():
                if isinstance(module, ResBlock):
                    module.use_checkpoint = all(p.requires_grad for p in module.parameters())
        patches = [(kind, _checkpointed(run) if self.gradient_checkpointing else run)
                   for kind, run in MOTION_LAYER_PATCHES]
        options = {"cond_or_uncond": [0] * clips, "patches": {"forward_timestep_embed_patch": patches}}
        flat_x, flat_t = x.flatten(0, 1), timesteps.repeat_interleave(frames).to(x.dtype)
        flat_context = context.repeat_interleave(frames, dim=0)
        added = adapter(flat_x, flat_t, flat_context) if adapter is not None else {}
        if "image_features" in added:
            options[IMAGE_FEATURES] = added["image_features"]
        out = self.unet(flat_x, flat_t, flat_context, control=added.get("control"), transformer_options=options)
        return out.unflatten(0, (clips, frames))

    def _holds(self, motion: MotionModel) -> bool:
        layers = [m for m in self.unet.modules() if isinstance(m, MotionModuleLayer)]
        transformers = [t for _, t in motion.in_unet_order()]
        image_layers = any(isinstance(m, ImageFeatureLayer) for m in self.unet.modules())
        return (len(layers) == len(transformers) and all(l.transformer is t for l, t in zip(layers, transformers))
                and image_layers == (motion.image_encoder is not None))

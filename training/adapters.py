"""The adapters the adapter stages train (training/stages.py), and the conditions they read, in the files ComfyUI
loads:

- `layout`: a ControlNet (ComfyUI's own cldm `ControlNet`: the UNet's encoder half, a zero conv per skip, a hint
  encoder) on a per-frame layout image, written with the `control_model.` keys of the original ControlNet releases,
  so core's ControlNetLoader loads it and ALCM_ApplyVideoControlNet applies it;
- `image`: the AnimateLCM-I2V image encoder (motion_models/image_encoder.py) on the clip's first frame, written into
  the student's motion-module file as `img_encoder.*`, as AnimateLCM-I2V is released.

Both start "from scratch" so that the adapted model is the unadapted one: the ControlNet's zero convs are zero (its
encoder a copy of the UNet's, as ControlNets start), the image encoder's `conv_in` and `block2`s are zero (its
official initialisation: what remains at the start is the frame-position encoding, `i2v_motion_scale` x PE).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import comfy.cldm.cldm
import comfy.ops
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

from ..motion_models.checkpoint import IMAGE_ENCODER_PREFIX, read_state_dict
from ..motion_models.image_encoder import ImageEncoder
from .models import reset_parameters
from .shapes import BACKGROUND

CONTROLNET_PREFIX = "control_model."  # the original releases' key prefix (control_v11p_sd15_*.pth)
HINT_SCALE = 8  # a ControlNet's hint is at 8x the model space's size (its hint encoder halves it three times)
ENCODER_PARTS = ("time_embed.", "input_blocks.", "middle_block.")  # what a ControlNet copies from its UNet
# adapter(x, timesteps, context) on the flattened frames [B*F, ...] -> {"control": ...} or {"image_features": ...}
BoundAdapter = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict]


class LayoutAdapter(nn.Module):
    """A ControlNet for the backbone's UNet, 3-channel hint in [0, 1] (ComfyUI's IMAGE, channels first)."""

    def __init__(self, unet_config: dict, device: torch.device | str | None = None,
                 gradient_checkpointing: bool = False):
        super().__init__()
        config = {k: v for k, v in unet_config.items() if k not in ("out_channels", "dtype", "device", "operations")}
        self.control = comfy.cldm.cldm.ControlNet(**config, hint_channels=3, dtype=torch.float32, device=device,
                                                  operations=comfy.ops.disable_weight_init)
        reset_parameters(self.control)
        self.gradient_checkpointing = gradient_checkpointing

    @torch.no_grad()
    def start_from_unet(self, unet: nn.Module) -> "LayoutAdapter":
        """From scratch: the encoder copies the UNet's weights as they are in effect (a LoRA applied now included),
        the zero convs are zero (no control at the start)."""
        for key, value in self.control.state_dict().items():
            if key.startswith(ENCODER_PARTS):
                value.copy_(operator.attrgetter(key)(unet))
        for conv in [*self.control.zero_convs, self.control.middle_block_out]:
            for p in conv.parameters():
                nn.init.zeros_(p)
        return self

    def load_file(self, path: str | Path) -> "LayoutAdapter":
        """An existing ControlNet (either key layout: with or without `control_model.`), strictly."""
        weights = load_file(str(path))
        weights = {k.removeprefix(CONTROLNET_PREFIX): v.float() for k, v in weights.items()}
        missing, unexpected = self.control.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(f"{Path(path).name} is not a ControlNet for this UNet: missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(unexpected)[:3]}")
        return self

    def file_weights(self) -> dict[str, torch.Tensor]:
        return {CONTROLNET_PREFIX + k: v.detach().cpu().contiguous() for k, v in self.control.state_dict().items()}

    def bind(self, hint: torch.Tensor) -> BoundAdapter:
        """hint [B, F, 3, H, W] -> the adapter for the UNet's flattened call on those clips."""
        flat = hint.flatten(0, 1)
        checkpoint = self.gradient_checkpointing and torch.is_grad_enabled() and any(
            p.requires_grad for p in self.parameters())
        for module in self.control.modules():
            if isinstance(module, ResBlock):
                module.use_checkpoint = checkpoint

        def adapter(x, timesteps, context):
            return {"control": self.control(x, flat.to(x), timesteps, context)}

        return adapter


class ImageAdapter(nn.Module):
    """The AnimateLCM-I2V image encoder for the backbone's UNet (one feature map per down level)."""

    def __init__(self, width: tuple[int, ...], latent_channels: int, motion_scale: float,
                 device: torch.device | str | None = None):
        super().__init__()
        self.encoder = ImageEncoder(width, latent_channels=latent_channels, device=device)
        self.motion_scale = motion_scale
        nn.init.zeros_(self.encoder.conv_in.weight)
        nn.init.zeros_(self.encoder.conv_in.bias)
        for block in self.encoder.body:
            nn.init.zeros_(block.block2.weight)
            nn.init.zeros_(block.block2.bias)

    def load_file(self, path: str | Path) -> "ImageAdapter":
        """The `img_encoder.*` weights of an I2V motion-module file (any format the pack reads)."""
        weights = {k[len(IMAGE_ENCODER_PREFIX):]: v.float() for k, v in read_state_dict(str(path)).items()
                   if k.startswith(IMAGE_ENCODER_PREFIX)}
        if not weights:
            raise ValueError(f"{Path(path).name} has no image encoder (img_encoder.* keys): not an I2V motion model")
        self.encoder.load_state_dict(weights)
        return self

    def file_weights(self) -> dict[str, torch.Tensor]:
        return {IMAGE_ENCODER_PREFIX + k: v.detach().cpu().contiguous()
                for k, v in self.encoder.state_dict().items()}

    def bind(self, latent: torch.Tensor) -> BoundAdapter:
        """latent [B, 1, C, h, w], each clip's first frame in model space -> the adapter for the flattened call."""

        def adapter(x, timesteps, context):
            clips = latent.shape[0]
            frames = x.shape[0] // clips
            per_frame = latent[:, 0].to(x).repeat_interleave(frames, dim=0)
            positions = torch.arange(frames, device=x.device).repeat(clips)
            return {"image_features": self.encoder(per_frame, positions, self.motion_scale)}

        return adapter


def target_copy(adapter: nn.Module) -> nn.Module:
    """The target network: a frozen copy of the online adapter (an EMA of it from then on)."""
    return copy.deepcopy(adapter).requires_grad_(False)


def layout_hint(videos: torch.Tensor, side: int, edges: bool = False) -> torch.Tensor:
    """Clips [B, F, 3, H, W] in [-1, 1] -> their layout hints [B, F, 3, 8 side, 8 side] in [0, 1]: the shape's mask
    (white where a pixel is not the black background: the moving shapes) or, with `edges`, Canny edges (any video;
    core's Canny node's defaults, 0.4 and 0.8)."""
    if edges:
        frames = ((videos.flatten(0, 1).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        found = [cv2.Canny(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), 102, 204) for f in frames]
        mask = torch.from_numpy(np.stack(found)).float().div(255).unflatten(0, videos.shape[:2]).to(videos.device)
    else:
        mask = (videos > BACKGROUND + 0.5).any(dim=2).float()
    size = side * HINT_SCALE
    hint = F.interpolate(mask.flatten(0, 1)[:, None], size=(size, size), mode="nearest")
    return hint.expand(-1, 3, -1, -1).unflatten(0, videos.shape[:2])


def conditioned_net(video_unet, motion, adapter: LayoutAdapter | ImageAdapter | None, condition: torch.Tensor | None):
    """net(x, t, context) for training/sampling.sample: the video UNet with `motion` and the adapter on `condition`
    (one per clip; repeated when guidance doubles the batch, the control applying to both halves as in ComfyUI)."""

    def net(x, timesteps, context):
        if adapter is None:
            return video_unet(x, timesteps, context, motion)
        repeats = x.shape[0] // condition.shape[0]
        return video_unet(x, timesteps, context, motion, adapter.bind(condition.repeat(repeats, *[1] * (
            condition.ndim - 1))))

    return net

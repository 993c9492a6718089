"""SparseCtrl files in the key layout of the AnimateDiff v3 release (`v3_sd15_sparsectrl_rgb.ckpt`,
`v3_sd15_sparsectrl_scribble.ckpt`), random weights.

The release is a diffusers-named SD1.5 ControlNet (conv_in, time_embedding, down_blocks, mid_block, one
`controlnet_down_blocks.{i}` zero conv per down residual, `controlnet_mid_block`) plus AnimateDiff motion modules
after each ResBlock/attention pair of the down levels (`down_blocks.{i}.motion_modules.{j}`, position encodings of 32
frames stored, none in the mid block). Its condition carries a mask channel: the scribble model embeds 3 + 1
channels of pixels through the usual 16-32-96-256 conv stack, the RGB model 4 + 1 channels of VAE latent through one
conv at latent resolution (`controlnet_cond_embedding.weight`). The official files wrap this in a `controlnet` entry.
The spatial layout is read from diffusers' ControlNetModel built on the meta device, not from ComfyUI.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .motion_modules import FULL_WIDTH, module_prefixes, sinusoidal_position_encoding, temporal_transformer_layout
from .weights import Layout, cached_file, cast, materialize

PE_LENGTH = 32
KINDS = ("rgb", "scribble")
OFFICIAL_NAMES = {"rgb": "v3_sd15_sparsectrl_rgb.ckpt", "scribble": "v3_sd15_sparsectrl_scribble.ckpt"}
MASK_CHANNELS = 1
CONDITION_CHANNELS = {"rgb": 4 + MASK_CHANNELS, "scribble": 3 + MASK_CHANNELS}
# Trained zero convs are small but not zero: random ones this size make the control visible in the UNet's output.
ZERO_CONV_STD = 0.02


def spatial_layout(kind: str, width: tuple[int, ...] = FULL_WIDTH) -> Layout:
    from diffusers import ControlNetModel

    with torch.device("meta"):
        model = ControlNetModel(block_out_channels=width, cross_attention_dim=768, attention_head_dim=8,
                                conditioning_channels=CONDITION_CHANNELS[kind])
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if kind == "rgb":  # the simplified condition embedding: one conv from the latent condition
        layout = {k: v for k, v in layout.items() if not k.startswith("controlnet_cond_embedding.")}
        layout.update({"controlnet_cond_embedding.weight": (width[0], CONDITION_CHANNELS[kind], 3, 3),
                       "controlnet_cond_embedding.bias": (width[0],)})
    return layout


def motion_layout(width: tuple[int, ...] = FULL_WIDTH) -> Layout:
    layout: Layout = {}
    for prefix, c in module_prefixes(width, mid_block=False):
        if prefix.startswith("down_blocks."):
            layout.update(temporal_transformer_layout(prefix, c, PE_LENGTH))
    return layout


def sparse_control_layout(kind: str, width: tuple[int, ...] = FULL_WIDTH) -> Layout:
    return {**spatial_layout(kind, width), **motion_layout(width)}


def _init(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor | None:
    if key.endswith("pos_encoder.pe"):
        return sinusoidal_position_encoding(shape[1], shape[2])
    zero_conv = key.startswith(("controlnet_down_blocks.", "controlnet_mid_block.", "controlnet_cond_embedding.w",
                                "controlnet_cond_embedding.conv_out."))
    if zero_conv and key.endswith(".weight"):
        return ZERO_CONV_STD * torch.randn(shape, generator=gen)
    return None


def sparse_control_state_dict(kind: str, width: tuple[int, ...] = FULL_WIDTH, seed: int = 0,
                              dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    if kind not in KINDS:
        raise ValueError(f"unknown SparseCtrl kind {kind}: {KINDS}")
    return cast(materialize(sparse_control_layout(kind, width), seed, _init), dtype)


def sparse_control_file(kind: str, width: tuple[int, ...] = FULL_WIDTH, seed: int = 0,
                        dtype: torch.dtype = torch.float16, fmt: str = "ckpt", wrapped: bool = True) -> Path:
    """A cached SparseCtrl file; `wrapped` puts the weights under `controlnet`, as the release does (.ckpt only)."""
    params = {"kind": kind, "width": width, "seed": seed, "dtype": str(dtype), "wrapped": wrapped}

    def build():
        state_dict = sparse_control_state_dict(kind, width, seed, dtype)
        return {"controlnet": state_dict} if wrapped and fmt == "ckpt" else state_dict

    tag = "full" if width == FULL_WIDTH else "w" + "-".join(map(str, width))
    return cached_file(f"sparsectrl_{kind}_{tag}.{fmt}", params, build)

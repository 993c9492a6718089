"""The SD1.5 motion model of AnimateLCM and AnimateDiff v1/v2/v3, in plain PyTorch.

Written from the original AnimateDiff/AnimateLCM design (docs/reference.md, section 2), not from
diffusers: the input GroupNorm normalises each frame on its own, where diffusers' `AnimateDiffTransformer3D`
normalises over all frames at once. Module and parameter names mirror the checkpoint keys, so a released state dict
loads with `load_state_dict` as is.

ComfyUI is never imported here: the glue code passes its layer classes (`operations`) and its attention function in.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

if TYPE_CHECKING:
    from .image_encoder import ImageEncoder

FULL_WIDTH = (320, 640, 1280, 1280)
HEADS = 8
GROUPS = 32
# AnimateLCM computes its position encoding in code for up to 64 frames and stores none in its files.
COMPUTED_PE_LENGTH = 64
DOWN_MODULES = 2  # motion modules per down level
UP_MODULES = 3  # motion modules per up level

# ComfyUI's signature: q, k, v of shape (B, N, heads * dim) -> (B, N, heads * dim).
AttentionFn = Callable[..., torch.Tensor]
# `torch.nn` or a ComfyUI ops class (`comfy.ops.disable_weight_init`, `manual_cast`): Linear, GroupNorm, LayerNorm.
Operations = ModuleType | type


def attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(QK^T / sqrt(d)) V with PyTorch's fused kernel, for use outside ComfyUI (tests, tools)."""
    b, n, inner = q.shape
    q, k, v = (t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
    if mask is not None and mask.ndim == 3:  # one (N, N) mask per batch item, shared by the heads
        mask = mask.unsqueeze(1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, n, inner)


def sinusoidal_position_encoding(length: int, channels: int) -> torch.Tensor:
    """pe[0, p, 2i] = sin(p / 10000^(2i/C)), pe[0, p, 2i+1] = cos(...), shape (1, length, C), float64."""
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float64) * (-math.log(10000.0) / channels))
    pe = torch.zeros(length, channels, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(0)


class PositionalEncoding(nn.Module):
    """Holds `pe`: loaded from the file when it stores one (AnimateDiff), else computed here, unsaved (AnimateLCM)."""

    def __init__(self, channels: int, length: int, stored: bool, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        # At least float32: the encoding is added in the compute dtype, which may be wider than the storage dtype.
        dtype = torch.promote_types(dtype or torch.float32, torch.float32)
        pe = sinusoidal_position_encoding(length, channels).to(device=device, dtype=dtype)
        self.register_buffer("pe", pe, persistent=stored)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(nn.Module):
    """Self-attention over the frame axis at each spatial location; position encoding added to its input."""

    def __init__(self, channels: int, pe_length: int, pe_stored: bool, operations: Operations = nn,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                 attention: AttentionFn = attention_sdpa):
        super().__init__()
        factory = {"dtype": dtype, "device": device}
        self.pos_encoder = PositionalEncoding(channels, pe_length, pe_stored, **factory)
        self.to_q = operations.Linear(channels, channels, bias=False, **factory)
        self.to_k = operations.Linear(channels, channels, bias=False, **factory)
        self.to_v = operations.Linear(channels, channels, bias=False, **factory)
        self.to_out = nn.ModuleList([operations.Linear(channels, channels, **factory)])
        self.attention = attention

    def forward(self, h: torch.Tensor, num_frames: int, key_scale: torch.Tensor | None = None) -> torch.Tensor:
        """`key_scale` ((b f), d, 1) multiplies the keys of each frame at each location: above 1 the frames attend
        more sharply to the most similar ones, below 1 more evenly to all (AnimateDiff-Evolved's "scale")."""
        # 1. One sequence of frames per spatial location
        d = h.shape[1]
        h = rearrange(h, "(b f) d c -> (b d) f c", f=num_frames)
        h = self.pos_encoder(h)

        # 2. Attention over frames
        k = self.to_k(h)
        if key_scale is not None:
            k = k * rearrange(key_scale, "(b f) d c -> (b d) f c", f=num_frames).to(k.dtype)
        h = self.attention(self.to_q(h), k, self.to_v(h), HEADS)
        h = self.to_out[0](h)

        # 3. Back to frames
        return rearrange(h, "(b d) f c -> (b f) d c", d=d)


class GEGLU(nn.Module):
    """Linear C -> 2 * inner, then a * gelu(g) on its two halves."""

    def __init__(self, channels: int, inner: int, operations: Operations = nn, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        self.proj = operations.Linear(channels, 2 * inner, dtype=dtype, device=device)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(h).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU C -> 4C, then Linear 4C -> C. `net.1` was a dropout in training: a placeholder keeps `net.2` aligned."""

    def __init__(self, channels: int, operations: Operations = nn, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        self.net = nn.Sequential(GEGLU(channels, 4 * channels, operations, dtype, device), nn.Identity(),
                                 operations.Linear(4 * channels, channels, dtype=dtype, device=device))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class TemporalTransformerBlock(nn.Module):
    """Two pre-norm temporal self-attention blocks, then a pre-norm GEGLU feed-forward, each with a residual."""

    def __init__(self, channels: int, pe_length: int, pe_stored: bool, operations: Operations = nn,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                 attention: AttentionFn = attention_sdpa):
        super().__init__()
        factory = {"dtype": dtype, "device": device}
        self.attention_blocks = nn.ModuleList(
            TemporalAttention(channels, pe_length, pe_stored, operations, attention=attention, **factory)
            for _ in range(2))
        self.norms = nn.ModuleList(operations.LayerNorm(channels, **factory) for _ in range(2))
        self.ff = FeedForward(channels, operations, **factory)
        self.ff_norm = operations.LayerNorm(channels, **factory)

    def forward(self, h: torch.Tensor, num_frames: int, key_scale: torch.Tensor | None = None) -> torch.Tensor:
        for attention_block, norm in zip(self.attention_blocks, self.norms):
            h = h + attention_block(norm(h), num_frames, key_scale)
        return h + self.ff(self.ff_norm(h))


class TemporalTransformer(nn.Module):
    """One motion module: mixes information across the frames of each clip, added to its input as a residual.

    Args:
        channels: feature channels at this UNet level (a multiple of 32).
        pe_length: frames the position encoding covers.
        pe_stored: whether the checkpoint stores the encoding (`attention_blocks.*.pos_encoder.pe` keys).
        operations: where Linear, GroupNorm and LayerNorm come from (`torch.nn` or a ComfyUI ops class).
        attention: `attention(q, k, v, heads, mask=None)` on (B, N, heads * dim) tensors, ComfyUI's signature.
    """

    def __init__(self, channels: int, pe_length: int = COMPUTED_PE_LENGTH, pe_stored: bool = False,
                 operations: Operations = nn, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, attention: AttentionFn = attention_sdpa):
        super().__init__()
        factory = {"dtype": dtype, "device": device}
        self.max_frames = pe_length
        self.norm = operations.GroupNorm(GROUPS, channels, eps=1e-6, affine=True, **factory)
        self.proj_in = operations.Linear(channels, channels, **factory)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, pe_length, pe_stored, operations, attention=attention, **factory)])
        self.proj_out = operations.Linear(channels, channels, **factory)

    def forward(self, x: torch.Tensor, num_frames: int, scale: float | torch.Tensor = 1.0,
                key_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """x: (batch * num_frames, C, H, W), the frames of each clip contiguous. Returns x + scale * temporal residual.

        `scale` and `key_scale` (the factor on the attention keys) are numbers or tensors that broadcast to
        (batch * num_frames, 1, H, W): one value per frame, or per frame and pixel. Clips never attend to each other:
        to run cond and uncond (or several context windows) in one call, stack them along the batch axis with the
        same `num_frames`.
        """
        if x.shape[0] % num_frames:
            raise ValueError(f"the batch of {x.shape[0]} frames is not a whole number of {num_frames}-frame clips")
        if num_frames > self.max_frames:
            raise ValueError(f"{num_frames} frames exceed the {self.max_frames} this motion model's position "
                             "encoding covers: use context windows or a shorter clip")
        if not torch.is_tensor(scale) and scale == 0:
            return x

        # 1. Input: GroupNorm on (b f) c h w normalises each frame on its own, as the original does
        bf, c, height, width = x.shape
        keys = None
        if torch.is_tensor(key_scale) or key_scale != 1:
            keys = torch.as_tensor(key_scale, device=x.device).expand(bf, 1, height, width)
            keys = keys.reshape(bf, 1, height * width).transpose(1, 2)
        h = self.norm(x)
        h = h.permute(0, 2, 3, 1).reshape(bf, height * width, c)
        h = self.proj_in(h)

        # 2. Temporal attention and feed-forward
        for block in self.transformer_blocks:
            h = block(h, num_frames, keys)

        # 3. Output
        h = self.proj_out(h)
        h = h.reshape(bf, height, width, c).permute(0, 3, 1, 2)
        if torch.is_tensor(scale):
            scale = scale.to(h.dtype)
        return x + scale * h


@dataclass(frozen=True)
class Placement:
    """Where a motion module sits in the SD1.5 UNet, in checkpoint terms: `block` is "down", "mid" or "up";
    `level` counts down blocks from the highest resolution and up blocks from the lowest; `position` is j in
    `motion_modules.{j}`."""

    block: str
    level: int
    position: int

    @property
    def key_prefix(self) -> str:
        name = "mid_block" if self.block == "mid" else f"{self.block}_blocks.{self.level}"
        return f"{name}.motion_modules.{self.position}.temporal_transformer."

    @property
    def ldm_block(self) -> tuple[str, int]:
        """The matching place in ComfyUI's (LDM) `UNetModel`, as (attribute, index).

        For `input_blocks`/`output_blocks` the module runs at the end of that block, after its ResBlock and
        SpatialTransformer and before any Upsample; for `middle_block` it runs after layer 1 (the
        SpatialTransformer), before the second ResBlock.
        """
        if self.block == "down":  # input_blocks[0] is conv_in; each level is 2 blocks and a Downsample
            return "input_blocks", 1 + (DOWN_MODULES + 1) * self.level + self.position
        if self.block == "mid":
            return "middle_block", 1
        return "output_blocks", UP_MODULES * self.level + self.position


def _level(count: int, channels: int, **kwargs) -> nn.Module:
    """One UNet level's motion modules, named `motion_modules.{j}.temporal_transformer` as in the checkpoints."""
    level = nn.Module()
    level.motion_modules = nn.ModuleList(
        nn.ModuleDict({"temporal_transformer": TemporalTransformer(channels, **kwargs)}) for _ in range(count))
    return level


class MotionModel(nn.Module):
    """All motion modules of one checkpoint: 2 per down level, 1 in the mid block (not in AnimateDiff v1),
    3 per up level (none in SparseCtrl, whose ControlNet is the UNet's encoder half).

    Args:
        width: channels per UNet level, highest resolution first; SD1.5 is (320, 640, 1280, 1280).
        mid_block: whether there is a mid-block module.
        up_blocks: whether there are up-level modules.
        pe_length: length of the position encoding the checkpoint stores (AnimateDiff v1: 24, v2/v3: 32), or None
            when it is computed in code (AnimateLCM, 64 frames).
        image_encoder: whether the checkpoint carries the AnimateLCM-I2V adapter (`img_encoder.*` keys): it is then
            a submodule, so its weights load and are checked with the rest; `image_channels` the latent channels it
            reads (4: SD1.5's VAE).
        operations, dtype, device, attention: passed to every `TemporalTransformer` (all but `attention` to the
            image encoder too).
    """

    def __init__(self, width: tuple[int, ...] = FULL_WIDTH, mid_block: bool = True, pe_length: int | None = None,
                 image_encoder: bool = False, image_channels: int = 4, operations: Operations = nn,
                 dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, attention: AttentionFn = attention_sdpa,
                 up_blocks: bool = True):
        super().__init__()
        kwargs = {"pe_length": pe_length or COMPUTED_PE_LENGTH, "pe_stored": pe_length is not None,
                  "operations": operations, "dtype": dtype, "device": device, "attention": attention}
        self.max_frames = kwargs["pe_length"]
        self.down_blocks = nn.ModuleList(_level(DOWN_MODULES, c, **kwargs) for c in width)
        self.mid_block = _level(1, width[-1], **kwargs) if mid_block else None
        self.up_blocks = nn.ModuleList(_level(UP_MODULES, c, **kwargs) for c in reversed(width) if up_blocks)
        # Named as in the checkpoint (`img_encoder.*`); read it as `image_encoder`. Imported here because the
        # encoder module builds on this one (its position encoding).
        from .image_encoder import ImageEncoder

        self.img_encoder = (ImageEncoder(width, image_channels, operations=operations, dtype=dtype, device=device)
                            if image_encoder else None)

    @property
    def image_encoder(self) -> "ImageEncoder | None":
        """The AnimateLCM-I2V adapter, None for motion models without one. Not one of the temporal modules:
        `in_unet_order` leaves it out, the glue code runs it once per UNet call."""
        return self.img_encoder

    def in_unet_order(self) -> list[tuple[Placement, TemporalTransformer]]:
        """Every module with its placement, in the order the UNet runs them: down levels, mid, up levels."""
        levels = [("down", i, block) for i, block in enumerate(self.down_blocks)]
        if self.mid_block is not None:
            levels.append(("mid", 0, self.mid_block))
        levels += [("up", i, block) for i, block in enumerate(self.up_blocks)]
        return [(Placement(name, i, j), module["temporal_transformer"])
                for name, i, block in levels for j, module in enumerate(block.motion_modules)]

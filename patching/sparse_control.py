"""SparseCtrl (AnimateDiff v3's sparse ControlNets) on ComfyUI's control machinery: ALCM_LoadSparseCtrl and
ALCM_ApplySparseCtrl.

A SparseCtrl file is a diffusers-named SD1.5 ControlNet with motion modules after each ResBlock/attention pair of its
down levels (docs/reference.md, section 8). Loading splits it: the ControlNet part becomes core's cldm `ControlNet`
(keys mapped with core's own diffusers mapping; the RGB model's one-conv condition embedding takes the place of the
hint stack), the motion part the pack's `MotionModel`, whose temporal transformers run inside the ControlNet's input
blocks. `SparseControlNet` zeroes the noisy input, as SparseCtrl was trained, and core's `ControlNet` object runs it
(hint resizing, strength, start/end percent, cond/uncond batching, memory). `SparseVideoControl` gives every call the
condition of the frames it denoises: keyframes at their frames, zeros elsewhere, and the mask channel saying which is
which. A context window without a keyframe gets no SparseCtrl at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

import comfy.cldm.cldm
import comfy.controlnet
import comfy.latent_formats
import comfy.model_detection
import comfy.model_management
import comfy.ops
import comfy.utils
from comfy.ldm.modules.attention import optimized_attention
from comfy.ldm.modules.diffusionmodules.openaimodel import TimestepEmbedSequential

from ..motion_models.checkpoint import quote_keys, unreadable_file_message
from ..motion_models.motion_module import MotionModel, TemporalTransformer
from .video_control import VideoControl, attach_controls, merge_controls

MOTION_KEY = ".motion_modules."
RGB_EMBEDDING = "controlnet_cond_embedding.weight"  # the RGB model's one conv over latent + mask
SCRIBBLE_EMBEDDING = "controlnet_cond_embedding.conv_in.weight"  # the scribble model's hint stack over pixels + mask


class SparseCtrlError(ValueError):
    """A file that is not a SparseCtrl model, or inputs it cannot use; the message names the cause and the fix."""


@dataclass(frozen=True)
class SparseCtrl:
    """The SPARSECTRL socket value: core's control object around a `SparseControlNet`, and which model it is."""

    control: comfy.controlnet.ControlNet
    kind: str  # "rgb" (keyframes as VAE latents) or "scribble" (keyframes as images)


class ClipMotionLayer(torch.nn.Module):
    """One SparseCtrl temporal transformer in a ControlNet input block. Core's ControlNet forward passes its blocks
    no transformer_options, so the frame count of the call comes from the `SparseControlNet` that owns the layer."""

    def __init__(self, transformer: TemporalTransformer, owner: "SparseControlNet"):
        super().__init__()
        self.__dict__["transformer"] = transformer  # its weights belong to the owner's motion model
        self.__dict__["owner"] = owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.owner.frames
        if frames is None:
            raise RuntimeError("a SparseCtrl model ran without a frame count: apply it with ALCM_ApplySparseCtrl, "
                               "not with a ControlNet apply node")
        return self.transformer(x, frames)


class SparseControlNet(torch.nn.Module):
    """Core's cldm ControlNet with SparseCtrl's motion modules in its down levels and its noisy input zeroed."""

    def __init__(self, controlnet: comfy.cldm.cldm.ControlNet, motion_model: MotionModel):
        super().__init__()
        self.controlnet = controlnet
        self.motion_model = motion_model
        self.dtype = controlnet.dtype
        self.frames: int | None = None  # frames per cond/uncond chunk of the current call
        for placement, transformer in motion_model.in_unet_order():
            attribute, index = placement.ldm_block  # the input block that ends with this module
            getattr(controlnet, attribute)[index].append(ClipMotionLayer(transformer, self))

    def forward(self, x, hint, timesteps, context, y=None, **kwargs):
        return self.controlnet(torch.zeros_like(x), hint, timesteps, context, y=y, **kwargs)


def split_state_dict(state_dict: Mapping[str, object], name: str) -> tuple[dict, dict, str]:
    """(ControlNet part, motion part, kind) of a SparseCtrl file's weights (bare, or under `controlnet`)."""
    nested = state_dict.get("controlnet")
    if isinstance(nested, Mapping):
        state_dict = nested
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if RGB_EMBEDDING in tensors:
        kind = "rgb"
    elif SCRIBBLE_EMBEDDING in tensors:
        kind = "scribble"
    else:
        raise SparseCtrlError(f"{name}: expected a SparseCtrl model (keys {RGB_EMBEDDING} or {SCRIBBLE_EMBEDDING}), "
                              f"found {quote_keys(tensors) or 'no tensors'}: SparseCtrl files are AnimateDiff v3's "
                              "v3_sd15_sparsectrl_rgb / _scribble")
    motion = {k: v for k, v in tensors.items() if MOTION_KEY in k}
    if not motion:
        raise SparseCtrlError(f"{name}: a ControlNet without motion modules, not a SparseCtrl model: load it with "
                              "Load ControlNet Model and apply it with ALCM_ApplyVideoControlNet")
    return {k: v for k, v in tensors.items() if MOTION_KEY not in k}, motion, kind


def _ldm_keys(spatial: dict, config: dict, kind: str) -> dict[str, str]:
    """diffusers name -> core cldm name, from core's own UNet mapping plus the ControlNet's own parts."""
    keys = comfy.utils.unet_to_diffusers(config)
    for s in ("weight", "bias"):
        keys[f"controlnet_mid_block.{s}"] = f"middle_block_out.0.{s}"
        keys.update({f"controlnet_down_blocks.{i}.{s}": f"zero_convs.{i}.0.{s}"
                     for i in range(len(config["channel_mult"]) * 3)})
        if kind == "rgb":
            keys[f"controlnet_cond_embedding.{s}"] = f"input_hint_block.0.{s}"
        else:  # conv_in, six blocks, conv_out: the hint stack's convs sit at the even indices 0..14
            keys[f"controlnet_cond_embedding.conv_in.{s}"] = f"input_hint_block.0.{s}"
            keys.update({f"controlnet_cond_embedding.blocks.{i}.{s}": f"input_hint_block.{2 * i + 2}.{s}"
                         for i in range(6)})
            keys[f"controlnet_cond_embedding.conv_out.{s}"] = f"input_hint_block.14.{s}"
    return keys


def load_sparse_control(state_dict: Mapping[str, object], name: str, unet_config: dict | None = None) -> SparseCtrl:
    """`unet_config`: the ControlNet's UNet config when core's detection cannot tell it (it knows SD1.5 at full
    width only; tests use narrow models)."""
    spatial, motion, kind = split_state_dict(state_dict, name)
    config = dict(unet_config) if unet_config else comfy.model_detection.unet_config_from_diffusers_unet(spatial)
    if config is None or config.get("context_dim") != 768:
        raise SparseCtrlError(f"{name}: its ControlNet is not SD1.5's (SparseCtrl exists for SD1.5 only)")
    # Core's diffusers detection matches known configs on everything but the channels per level: read those.
    level_keys = [f"down_blocks.{i}.resnets.0.conv1.weight" for i in range(len(config["channel_mult"]))]
    if missing := [k for k in level_keys if k not in spatial]:
        raise SparseCtrlError(f"{name}: not a SparseCtrl layout: missing keys {quote_keys(missing)}")
    config["channel_mult"] = [spatial[k].shape[0] // config["model_channels"] for k in level_keys]
    keys = _ldm_keys(spatial, config, kind)
    if unknown := [k for k in spatial if k not in keys]:
        raise SparseCtrlError(f"{name}: not a SparseCtrl layout: unexpected keys {quote_keys(unknown)}")
    hint_channels = spatial[RGB_EMBEDDING if kind == "rgb" else SCRIBBLE_EMBEDDING].shape[1]

    load_device = comfy.model_management.get_torch_device()
    dtype = comfy.model_management.unet_dtype(model_params=-1, weight_dtype=comfy.utils.weight_dtype(spatial))
    manual_cast_dtype = comfy.model_management.unet_manual_cast(dtype, load_device)
    operations = comfy.ops.pick_operations(dtype, manual_cast_dtype)
    offload = comfy.model_management.unet_offload_device()
    config = {k: v for k, v in config.items() if k not in ("out_channels", "dtype", "device", "operations")}
    controlnet = comfy.cldm.cldm.ControlNet(hint_channels=hint_channels, operations=operations, dtype=dtype,
                                            device=offload, **config)
    if kind == "rgb":  # one conv at latent resolution instead of the 8x-downsampling hint stack
        controlnet.input_hint_block = TimestepEmbedSequential(operations.conv_nd(
            2, hint_channels, config["model_channels"], 3, padding=1, dtype=dtype, device=offload))
    missing, unexpected = controlnet.load_state_dict({keys[k]: v for k, v in spatial.items()}, strict=False)
    if missing or unexpected:
        raise SparseCtrlError(f"{name}: not a complete SparseCtrl {kind} model: missing {quote_keys(missing)}; "
                              f"unexpected {quote_keys(unexpected)}")

    width = tuple(config["model_channels"] * m for m in config["channel_mult"])
    pe_lengths = {v.shape[1] for k, v in motion.items() if k.endswith("pos_encoder.pe")}
    motion_model = MotionModel(width, mid_block=False, up_blocks=False, pe_length=max(pe_lengths, default=None),
                               operations=operations, dtype=dtype, device=offload, attention=optimized_attention)
    try:
        motion_model.load_state_dict(motion)
    except RuntimeError as error:
        raise SparseCtrlError(f"{name}: its motion modules are not SparseCtrl's (down levels only): {error}") from None
    control = comfy.controlnet.ControlNet(SparseControlNet(controlnet, motion_model),
                                          compression_ratio=1 if kind == "rgb" else 8, load_device=load_device,
                                          manual_cast_dtype=manual_cast_dtype)
    return SparseCtrl(control, kind)


def load_sparse_control_file(path: str, name: str) -> SparseCtrl:
    try:
        state_dict = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as error:  # damaged bytes fail in many ways (EOFError, SafetensorError, UnpicklingError)
        raise SparseCtrlError(unreadable_file_message(name, error)) from error
    return load_sparse_control(state_dict, name)


def parse_frame_indices(text: str) -> list[int] | None:
    """"0, 8, -1" -> [0, 8, -1] (negative counts from the end); empty -> None (spread over the clip)."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        return [int(p) for p in parts] or None
    except ValueError:
        raise SparseCtrlError(f"frame_indices {text!r}: expected whole numbers separated by commas, such as "
                              "'0, 15' or '0, -1' (-1 is the last frame), or nothing to spread the keyframes evenly") \
            from None


def check_index_count(count: int, indices: list[int]) -> None:
    if len(indices) != count:
        raise SparseCtrlError(f"{count} keyframe images but {len(indices)} frame_indices {indices}: give one index "
                              "per image, or none to spread them over the clip")


def keyframe_frames(count: int, total: int, indices: list[int] | None) -> dict[int, int]:
    """frame -> keyframe, for `count` keyframes in a clip of `total` frames: at `indices` (negative from the end),
    or, without indices, spread evenly from the first frame to the last (int(linspace(0, total - 1, count)))."""
    if indices is None:
        if count > total:
            raise SparseCtrlError(f"{count} keyframes do not fit in {total} frames: give at most {total} images")
        frames = [0] if count == 1 else [int(k * (total - 1) / (count - 1)) for k in range(count)]
    else:
        check_index_count(count, indices)
        if outside := [i for i in indices if not -total <= i < total]:
            raise SparseCtrlError(f"frame_indices {outside} are outside the {total}-frame clip: use 0..{total - 1} "
                                  f"or -1..-{total}")
        frames = [i % total for i in indices]
    if len(set(frames)) != len(frames):
        raise SparseCtrlError(f"two keyframes fall on the same frame ({frames} in a {total}-frame clip): give each "
                              "keyframe its own frame")
    return {frame: k for k, frame in enumerate(frames)}


class SparseVideoControl(VideoControl):
    """A conditioning's `control` that gives SparseCtrl, per call, the condition of exactly the frames it denoises."""

    def __init__(self, sparse: SparseCtrl, keyframes: torch.Tensor, indices: list[int] | None, strength: float,
                 percent_range: tuple[float, float]):
        super().__init__(sparse.control, keyframes, strength, percent_range)
        self.sparse, self.indices = sparse, indices

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        previous = None
        if self.previous_controlnet is not None:
            previous = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
        frames, total = self.frames_of_call(x_noisy.shape[0], batched_number, transformer_options)
        placed = keyframe_frames(self.hints.shape[0], total, self.indices)
        window = tuple(placed.get(f, -1) for f in frames)
        if all(k < 0 for k in window):
            return previous  # no keyframe in this window: SparseCtrl stays out of it
        stock = self._stock_for(window)
        stock.control_model.frames = len(frames)
        try:
            own = stock.get_control(x_noisy, t, cond, batched_number, transformer_options)
        finally:
            stock.control_model.frames = None
        return merge_controls(own, previous)

    def _hinted(self, stock, window: tuple[int, ...]):
        """Keyframes where the window has them, zeros elsewhere, and the mask channel (1 on keyframes)."""
        condition = self.hints.new_zeros((len(window), *self.hints.shape[1:]))
        mask = self.hints.new_zeros((len(window), 1, *self.hints.shape[2:]))
        for position, k in enumerate(window):
            if k >= 0:
                condition[position], mask[position] = self.hints[k], 1.0
        return stock.set_cond_hint(condition, self.strength, self.timestep_percent_range, extra_concat=[mask])

    def _over(self, control) -> "SparseVideoControl":
        return SparseVideoControl(SparseCtrl(control, self.sparse.kind), self.hints, self.indices, self.strength,
                                  self.timestep_percent_range)


def keyframe_condition(sparse: SparseCtrl, images: torch.Tensor, vae=None) -> torch.Tensor:
    """The keyframes as the model reads them: images [N, 3, H, W] for scribble; for RGB, their VAE latents times
    SD1.5's latent scale (the mean of the encoding, where the reference draws a sample of it)."""
    pixels = images[..., :3]
    if sparse.kind == "scribble":
        return pixels.movedim(-1, 1)
    if vae is None:
        raise SparseCtrlError("the RGB SparseCtrl model reads its keyframes as VAE latents: connect the checkpoint's "
                              "VAE to ALCM_ApplySparseCtrl's vae input")
    return comfy.latent_formats.SD15().process_in(vae.encode(pixels))


def apply_sparse_control(positive, negative, sparse: SparseCtrl, images: torch.Tensor, frame_indices: str,
                         strength: float, start_percent: float, end_percent: float, vae=None) -> list:
    indices = parse_frame_indices(frame_indices)
    if indices is not None:
        check_index_count(images.shape[0], indices)  # before sampling; keyframe_frames checks the clip length then
    keyframes = keyframe_condition(sparse, images, vae)
    return attach_controls(positive, negative, lambda previous: SparseVideoControl(
        sparse, keyframes, indices, strength, (start_percent, end_percent)).set_previous_controlnet(previous))

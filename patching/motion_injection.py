"""Puts a motion model into a clone of an SD1.5 MODEL through the model patcher's sanctioned extension points.

- the motion model's own ModelPatcher is an additional model, so ComfyUI loads and offloads it with the UNet;
- an injection inserts one `MotionModuleLayer` per temporal transformer into the UNet blocks at the end of
  `patch_model()` and removes them on eject, so the layers never see weight patching and the input MODEL, and the
  UNet once unpatched, stay exactly as they were;
- a forward_timestep_embed patch runs those layers with the frame count of each cond/uncond chunk, and the motion
  strength of the chunk's frames at this step (motion_strength.py);
- for AnimateLCM-I2V, `ImageFeatureLayer`s go in before the second motion module of each down level; they add the
  image encoder's features, which `attach_image` computes once per UNet call (a DIFFUSION_MODEL wrapper);
- the model samples on the motion model's noise schedule (model_sampling.py);
- an OUTER_SAMPLE wrapper blends prompt schedules left for the latent's frame count (prompt_travel.py) and rejects
  clips longer than the position encoding, or conds for another frame count, before any model is loaded;
- another one previews the whole clip, animated, at each step (animated_preview.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.utils
from comfy.ldm.modules.attention import optimized_attention
from comfy.ldm.modules.diffusionmodules.openaimodel import Upsample
from comfy.patcher_extension import PatcherInjection, WrappersMP

from ..motion_models.checkpoint import LoadedMotionModel, load_motion_model, unreadable_file_error
from ..motion_models.motion_module import MotionModel, TemporalTransformer
from ..samplers.schedule import NoiseSchedule
from .animated_preview import with_animated_preview
from .compat import core_model_patcher
from .model_sampling import set_noise_schedule
from .motion_strength import MotionStrength, frame_factor, sigma_range
from .prompt_travel import place_schedules

KEY = "animatelcm"
PREVIEW_KEY = "animatelcm_animated_preview"
IMAGE_FEATURES = "animatelcm_image_features"  # transformer_options entry: the I2V features of the current UNet call


@dataclass(frozen=True)
class MotionModelPatcher:
    """The MOTION_MODEL socket value: the loaded model, its format, and the ModelPatcher that manages its memory."""

    loaded: LoadedMotionModel
    patcher: comfy.model_patcher.ModelPatcher

    @property
    def is_animatelcm(self) -> bool:
        return self.loaded.format.kind.startswith("animatelcm")


def load_motion_model_file(path: str, name: str) -> MotionModelPatcher:
    """Read a motion-module file safely (weights only), detect its format and wrap it for ComfyUI's memory
    management."""
    try:
        state_dict = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as error:  # damaged bytes fail in many ways (EOFError, SafetensorError, UnpicklingError)
        raise unreadable_file_error(name, error) from error
    load_device = comfy.model_management.get_torch_device()
    dtype = comfy.model_management.unet_dtype(supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])
    # manual_cast computes in the dtype of the UNet's activations, whatever the storage dtype.
    loaded = load_motion_model(state_dict, name, operations=comfy.ops.manual_cast, dtype=dtype,
                               attention=optimized_attention)
    patcher = core_model_patcher(loaded.model, load_device, comfy.model_management.unet_offload_device())
    return MotionModelPatcher(loaded, patcher)


class MotionModuleLayer(torch.nn.Module):
    """Runs one temporal transformer inside a UNet block.

    The transformer is held outside the module tree, so the UNet's state dict and ComfyUI's per-module weight
    management never see it: its weights belong to the motion model's own patcher.
    """

    def __init__(self, transformer: TemporalTransformer, strength: MotionStrength,
                 sigmas: tuple[float, float] | None = None):
        super().__init__()
        self.__dict__["transformer"] = transformer
        self.strength = strength
        self.sigmas = sigmas  # the (highest, lowest) sigma of the steps it runs at; None: all

    def forward(self, x: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        # calc_cond_batch stacks one chunk of all frames per cond/uncond entry: attend within each chunk.
        chunks = len(transformer_options.get("cond_or_uncond") or [0])
        frames = x.shape[0] // chunks
        sigma = transformer_options.get("sigmas")
        if self.sigmas is not None and sigma is not None and not self.sigmas[1] <= float(sigma.max()) <= self.sigmas[0]:
            return x
        effect, key_scale = (frame_factor(value, transformer_options, chunks, frames, *x.shape[-2:], x.device)
                             for value in (self.strength.effect, self.strength.key_scale))
        return self.transformer(x, frames, effect, key_scale)


class ImageFeatureLayer(torch.nn.Module):
    """Adds the AnimateLCM-I2V image encoder's feature map of one down level to the UNet hidden states (no-op when
    no image is attached)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        features = transformer_options.get(IMAGE_FEATURES)
        return x if features is None else x + features[self.level].to(x.dtype)


def _run_motion_layer(layer: MotionModuleLayer | ImageFeatureLayer, x, emb, context, transformer_options, *args):
    return layer(x, transformer_options)


# forward_timestep_embed patches that run the inserted layers: (layer class, function) pairs.
MOTION_LAYER_PATCHES = ((MotionModuleLayer, _run_motion_layer), (ImageFeatureLayer, _run_motion_layer))


def remove_motion_layers(unet) -> None:
    """Takes every motion (and image-feature) layer out of a ComfyUI `UNetModel`."""
    for blocks in (unet.input_blocks, [unet.middle_block], unet.output_blocks):
        for block in blocks:
            for i in reversed(range(len(block))):
                if isinstance(block[i], (MotionModuleLayer, ImageFeatureLayer)):
                    del block[i]


def insert_motion_layers(unet, motion_model: MotionModel, strength: MotionStrength,
                         sigmas: tuple[float, float] | None = None) -> None:
    """Puts one `MotionModuleLayer` per temporal transformer of `motion_model` into a ComfyUI `UNetModel` at the
    places of the reference (and the I2V image-feature layers); any layers already there are removed first, so none
    runs twice. They run through `MOTION_LAYER_PATCHES` in transformer_options."""
    remove_motion_layers(unet)
    for placement, transformer in motion_model.in_unet_order():
        attribute, index = placement.ldm_block
        blocks = getattr(unet, attribute)
        block = blocks if attribute == "middle_block" else blocks[index]
        layers = [MotionModuleLayer(transformer, strength, sigmas)]
        if motion_model.image_encoder is not None and placement.block == "down" and placement.position == 1:
            layers.insert(0, ImageFeatureLayer(placement.level))  # after the level's second resnet/attention
        if attribute == "middle_block":  # between the SpatialTransformer and the second ResBlock
            at = index + 1
        else:  # after the ResBlock and SpatialTransformer, before any Upsample
            upsample = [i for i, module in enumerate(block) if isinstance(module, Upsample)]
            at = upsample[0] if upsample else len(block)
        for offset, layer in enumerate(layers):
            block.insert(at + offset, layer)


def _inject(motion: MotionModelPatcher, strength: MotionStrength, patcher: comfy.model_patcher.ModelPatcher) -> None:
    # The sigmas of start/end percent on the schedule this very patcher samples with (later nodes may change it).
    sigmas = sigma_range(strength, patcher.get_model_object("model_sampling"))
    insert_motion_layers(patcher.model.diffusion_model, motion.loaded.model, strength, sigmas)


def _eject(patcher: comfy.model_patcher.ModelPatcher) -> None:
    remove_motion_layers(patcher.model.diffusion_model)


def _check_frame_count(max_frames: int, executor, noise, *args, **kwargs):
    frames = noise.shape[0]
    conds = getattr(executor.class_obj, "conds", {})
    place_schedules(conds, frames)  # a prompt schedule of frame_count 0 takes the latent's frames
    handler = executor.class_obj.model_options.get("context_handler")
    if frames > max_frames and handler is None:
        raise ValueError(f"{frames} frames exceed the {max_frames} frames the motion model's position encoding covers: "
                         f"add context windows (sliding windows of about 16 frames) or make the clip at most "
                         f"{max_frames} frames long")
    for kind, cond_list in conds.items():
        for cond in cond_list:
            per_frame = cond.get("cross_attn")
            if per_frame is not None and per_frame.shape[0] not in (1, frames):
                raise ValueError(f"the {kind} conditioning has {per_frame.shape[0]} frames (a prompt schedule) but the "
                                 f"latent has {frames}: set the schedule's frame_count to {frames}")
    window = getattr(handler, "context_length", 0)
    if frames > window > max_frames:
        raise ValueError(f"context_length {window} exceeds the {max_frames} frames the motion model's position "
                         f"encoding covers: use windows of at most {max_frames} frames (16 is what it was trained on)")
    return executor(noise, *args, **kwargs)


def applied_motion_model(model: comfy.model_patcher.ModelPatcher) -> MotionModelPatcher | None:
    return model.get_attachment(KEY)


def attach_motion_model(model: comfy.model_patcher.ModelPatcher, motion: MotionModelPatcher,
                        strength: MotionStrength | float,
                        beta_schedule: str = "auto") -> comfy.model_patcher.ModelPatcher:
    """A clone of `model` that runs `motion` in its UNet (a number as `strength` is the effect alone); `model` itself
    is left untouched."""
    strength = strength if isinstance(strength, MotionStrength) else MotionStrength(float(strength))
    m = model.clone()
    m.set_additional_models(KEY, [motion.patcher])
    m.set_injections(KEY, [PatcherInjection(inject=partial(_inject, motion, strength), eject=_eject)])
    patches = m.model_options["transformer_options"].get("patches", {}).get("forward_timestep_embed_patch", [])
    for layer_type, run in MOTION_LAYER_PATCHES:
        if not any(patched is layer_type for patched, _ in patches):
            m.set_model_forward_timestep_embed_patch((layer_type, run))
    m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, KEY,
                           partial(_check_frame_count, motion.loaded.format.max_frames))
    m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, PREVIEW_KEY, with_animated_preview)
    set_noise_schedule(m, NoiseSchedule.for_motion_model(beta_schedule, motion.is_animatelcm,
                                                         motion.loaded.format.has_image_encoder))
    m.set_attachments(KEY, motion)
    return m

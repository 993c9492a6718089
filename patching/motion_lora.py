"""Motion LoRAs on a MOTION_MODEL: each LoRA's up @ down becomes a weight patch on a clone of the motion model's
patcher, so ComfyUI merges it when the motion model loads and restores the weights when it unloads. The loaded
motion model, the file, and every other user of the same MOTION_MODEL keep the original weights."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.utils

from ..motion_models.checkpoint import normalize_state_dict, unreadable_file_error
from ..motion_models.motion_lora import lora_pairs, motion_lora_diffs
from .motion_injection import MotionModelPatcher


@dataclass(frozen=True)
class MotionLoRA:
    """One entry of the MOTION_LORA socket value (a list: LoRAs chain)."""

    name: str
    state_dict: dict
    strength: float


def load_motion_lora_file(path: str, name: str, strength: float,
                          previous: list[MotionLoRA] | None = None) -> list[MotionLoRA]:
    """`previous` plus this file's LoRA, read weights-only and refused here if it is not a temporal motion LoRA."""
    try:
        state_dict = normalize_state_dict(comfy.utils.load_torch_file(path, safe_load=True))
    except Exception as error:  # damaged bytes fail in many ways (EOFError, SafetensorError, UnpicklingError)
        raise unreadable_file_error(name, error) from error
    lora_pairs(state_dict, name)
    return [*(previous or []), MotionLoRA(name, state_dict, strength)]


def with_motion_loras(motion: MotionModelPatcher, loras: list[MotionLoRA] | None) -> MotionModelPatcher:
    """The motion model with `loras` merged at their strengths (W + strength · up @ down, summed), on a clone."""
    if not loras:
        return motion
    shapes = {key: tensor.shape for key, tensor in motion.loaded.model.state_dict().items()}
    patcher = motion.patcher.clone()
    for lora in loras:
        diffs = motion_lora_diffs(lora.state_dict, shapes, lora.name)
        patcher.add_patches({key: (diff,) for key, diff in diffs.items()}, lora.strength)
    return MotionModelPatcher(motion.loaded, patcher)

"""Where ComfyUI's Python API differs between the versions the pack supports (0.3.75 to 0.33.0), decided once.

Each function asks the running ComfyUI what it offers (a parameter, an attribute), never its version string, so a
release in between or a fork behaves by what it has. Everything else in the pack calls these and stays the same on
every version.
"""

from __future__ import annotations

import inspect

import comfy.context_windows
import comfy.model_patcher
import comfy.sd


def _accepts(function, parameter: str) -> bool:
    return parameter in inspect.signature(function).parameters


def context_window(index_list: list[int], total_frames: int) -> comfy.context_windows.IndexListContextWindow:
    """Core's window object for frames `index_list` of a clip of `total_frames`.

    0.4.0+ takes the clip length in the constructor (and divides by it there); 0.3.75 has no such parameter, so the
    pack sets the same attribute, and the object looks the same to a reader on both.
    """
    window_class = comfy.context_windows.IndexListContextWindow
    if _accepts(window_class.__init__, "total_frames"):
        return window_class(index_list, total_frames=total_frames)
    window = window_class(index_list)
    window.total_frames = total_frames
    return window


def core_model_patcher(model, load_device, offload_device) -> comfy.model_patcher.ModelPatcher:
    """The patcher core itself uses for a model it loads: `CoreModelPatcher` (0.12.0+), which ComfyUI's start-up
    turns into the dynamic-VRAM patcher where that is enabled, so it is looked up at each call, not at import. A plain
    `ModelPatcher` among a load's models would switch that whole load back to estimate-based freeing. 0.3.75 has only
    `ModelPatcher`."""
    patcher_class = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    return patcher_class(model, load_device=load_device, offload_device=offload_device)


def load_checkpoint_static(path: str):
    """(MODEL, CLIP, VAE) of a checkpoint, with dynamic VRAM off where ComfyUI has it (0.12.0+): for the trainer,
    which moves the UNet's weights to its device itself and trains them."""
    extra = {"disable_dynamic": True} if _accepts(comfy.sd.load_checkpoint_guess_config, "disable_dynamic") else {}
    return comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True, **extra)[:3]

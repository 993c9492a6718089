"""Context windows for long videos, through core's hook for them (`model_options["context_handler"]`).

The motion module is trained on 16 frames, so a long clip is denoised as overlapping windows of about 16 frames whose
outputs are fused per frame. Core's IndexListContextHandler (0.3.75) does not serve video batches: it does not cut
per-frame conditioning (a prompt schedule's [frames, tokens, dim] cross-attention) to the window, so every window
gets the first frames' prompts; its step lookup fails on a batch of timesteps; and some of its schedules give frames
past the end (see samplers/context_windows.py). This handler implements core's ContextHandlerABC with the pack's
schedules and keeps core's conventions: `transformer_options["context_window"]` holds an IndexListContextWindow
during each window, and core's prepare-sampling wrapper sizes memory for one window.

Which frames a window holds reaches everything else through AnimateDiff-Evolved's `transformer_options["ad_params"]`
(full_length, context_length, sub_idxs: the window's absolute frame indices), the contract IP-Adapter and
Advanced-ControlNet read, set for every window and removed after; the pack's own per-frame controls read it too.

With FreeNoise, the sampler's initial noise is rescheduled for the windows (patching/noise.py).
"""

from __future__ import annotations

import logging

import torch

import comfy.context_windows
import comfy.model_management

from ..samplers.context_windows import context_windows, fuse_weights
from ..samplers.noise import NOISE_TYPES
from .compat import context_window
from .noise import add_free_noise

AD_PARAMS = "ad_params"  # AnimateDiff-Evolved's window contract (docs/reference.md, section 7)
AD_STATE = "ADGS"  # in transformer_options while AnimateDiff-Evolved itself samples


class VideoContextHandler(comfy.context_windows.ContextHandlerABC):
    dim = 0  # frames are the batch (read by core's prepare-sampling wrapper)

    def __init__(self, context_length: int, context_overlap: int, context_stride: int, schedule: str,
                 fuse_method: str):
        super().__init__()
        self.context_length, self.context_overlap, self.context_stride = context_length, context_overlap, context_stride
        self.schedule, self.fuse_method = schedule, fuse_method

    def should_use_context(self, model, conds, x_in, timestep, model_options) -> bool:
        return x_in.shape[0] > self.context_length

    def get_resized_cond(self, cond_in, x_in, window, device=None):
        """Conditioning for one window: anything with one entry per frame keeps only the window's frames."""
        if cond_in is None:
            return None
        frames = x_in.shape[0]
        resized = []
        for cond in cond_in:
            cond = {key: window_of(value, frames, window.index_list) for key, value in cond.items()}
            if "model_conds" in cond:
                cond["model_conds"] = {k: window_of(v, frames, window.index_list)
                                       for k, v in cond["model_conds"].items()}
            resized.append(cond)
        return resized

    def execute(self, calc_cond_batch, model, conds, x_in, timestep, model_options):
        frames = x_in.shape[0]
        step = self._step(timestep, model_options)
        if step == 0:  # once per run, not on every step
            warn_misaligned_controls(conds)
        windows = context_windows(frames, self.context_length, self.context_overlap, self.schedule, step,
                                  self.context_stride)
        totals = [torch.zeros_like(x_in) for _ in conds]
        weight_sum = torch.zeros(frames, dtype=x_in.dtype, device=x_in.device)
        options = model_options["transformer_options"]
        publish = AD_STATE not in options  # while AnimateDiff-Evolved samples, its ad_params are its own
        for index_list in windows:
            comfy.model_management.throw_exception_if_processing_interrupted()  # stop between windows on Cancel
            window = context_window(index_list, frames)
            options["context_window"] = window
            if publish:
                options[AD_PARAMS] = window_params(index_list, frames)
            index = torch.tensor(index_list, device=x_in.device)
            outputs = calc_cond_batch(model, [self.get_resized_cond(c, x_in, window) for c in conds],
                                      x_in[index], timestep[index] if timestep.shape[0] == frames else timestep,
                                      model_options)
            weights = torch.tensor(fuse_weights(self.fuse_method, index_list, frames, self.context_overlap),
                                   dtype=x_in.dtype, device=x_in.device)
            for total, output in zip(totals, outputs):
                total.index_add_(0, index, output * weights.view(-1, *[1] * (x_in.ndim - 1)))
            weight_sum.index_add_(0, index, weights)
        options.pop("context_window", None)
        if publish:
            options.pop(AD_PARAMS, None)
        return [total / weight_sum.view(-1, *[1] * (x_in.ndim - 1)) for total in totals]

    @staticmethod
    def _step(timestep: torch.Tensor, model_options: dict) -> int:
        """Which sampling step this is (uniform windows move every step): the nearest of the run's sigmas."""
        sigmas = model_options["transformer_options"].get("sample_sigmas")
        if sigmas is None:
            return 0
        return int(torch.argmin((sigmas.to(timestep.device) - timestep.flatten()[0]).abs()))


def window_params(index_list: list[int], frames: int) -> dict:
    """The `ad_params` of one window; its key names are the contract, never to be renamed."""
    return {"full_length": frames, "context_length": len(index_list), "sub_idxs": list(index_list)}


def window_frames(transformer_options: dict, frames_per_chunk: int) -> tuple[list[int], int]:
    """The clip frames one UNet call holds (per cond/uncond chunk) and the clip's length, from `ad_params`.

    Without windows the call holds the whole clip. Windows from a handler that does not publish `ad_params` (core's
    own) cannot be placed in the clip: refused rather than given the clip's first frames.
    """
    params = transformer_options.get(AD_PARAMS)
    if params is not None and params.get("sub_idxs") is not None:
        return list(params["sub_idxs"]), params["full_length"]
    if transformer_options.get("context_window") is not None:
        raise ValueError("per-frame inputs cannot tell which frames this context window holds (its handler does not "
                         "publish ad_params): use ALCM_ContextOptions for the context windows")
    return list(range(frames_per_chunk)), frames_per_chunk


def warn_misaligned_controls(conds) -> None:
    """Core's ControlNet nodes hand every window the clip's first hints: say so when a clip's worth was given.
    Controls of other classes (Advanced-ControlNet's) read `ad_params` and are left alone."""
    for cond in conds:
        for entry in cond or []:
            control = entry.get("control")
            while control is not None:
                hints = getattr(control, "cond_hint_original", None)  # core's controls; VideoControl has none
                core = type(control).__module__.startswith("comfy.")
                if core and isinstance(hints, torch.Tensor) and hints.shape[0] > 1:
                    logging.warning("A ControlNet applied by a core node got %d hint images: under context windows "
                                    "every window uses the first ones. Use ALCM_ApplyVideoControlNet to give each "
                                    "frame its own hint.", hints.shape[0])
                    return
                control = getattr(control, "previous_controlnet", None)


def window_of(value, frames: int, index_list: list[int]):
    """A per-frame tensor (or a cond object holding one) cut to the window's frames; anything else unchanged."""
    tensor = getattr(value, "cond", value)
    if not isinstance(tensor, torch.Tensor) or tensor.ndim == 0 or tensor.shape[0] != frames or frames == 1:
        return value
    cut = tensor[torch.tensor(index_list, device=tensor.device)]
    return value._copy_with(cut) if tensor is not value else cut


def apply_context_windows(model, context_length: int, context_overlap: int, context_stride: int, schedule: str,
                          fuse_method: str, noise: str = "default"):
    if noise not in NOISE_TYPES:
        raise ValueError(f"noise must be one of {', '.join(NOISE_TYPES)}, got {noise!r}")
    m = model.clone()
    m.model_options["context_handler"] = VideoContextHandler(context_length, context_overlap, context_stride,
                                                             schedule, fuse_method)
    comfy.context_windows.create_prepare_sampling_wrapper(m)  # memory estimates for one window, not the whole clip
    if noise == "FreeNoise":  # batched windows do not overlap, whatever context_overlap says
        add_free_noise(m, context_length, 0 if schedule == "batched" else context_overlap)
    return m

"""Per-frame ControlNet for video: ALCM_ApplyVideoControlNet.

Core's ControlNetApplyAdvanced lines hints up with frames only by luck: `broadcast_image_to` hands every call the
clip's first `batch // chunks` hints, so under context windows every window gets the first frames' hints, and fewer
hints than frames are tiled (1 2 3 1 2 3) instead of held. `VideoControl` wraps the stock control object core's
loader returned (ControlNet, control LoRA, T2I adapter) and gives it, per call, exactly the hints of the frames that
call denoises: the context window's `index_list`, in the same order for each cond/uncond chunk. Core's own hint
preparation (resize, VAE encode), strength and start/end range then apply unchanged.
"""

from __future__ import annotations

import itertools

import torch

import comfy.utils

from .context_handler import window_frames


def hint_frames(count: int, frames: int, spread: bool) -> list[int]:
    """Which of `count` hints (or masks) each of `frames` frames uses: hint k for frame k and the last one held after
    the end; or, with `spread`, the hints stretched evenly over the clip, as a hint video at a lower frame rate."""
    if spread:
        return [min(count - 1, f * count // frames) for f in range(frames)]
    return [min(f, count - 1) for f in range(frames)]


def merge_controls(own: dict | None, previous: dict | None) -> dict | None:
    """Chained controls as core merges them: residuals at the same place add, a missing one is taken from the other."""
    if own is None or previous is None:
        return previous if own is None else own
    return {key: [a if b is None else b if a is None else a + b
                  for a, b in itertools.zip_longest(own.get(key, []), previous.get(key, []))]
            for key in ("input", "middle", "output")}


class VideoControl:
    """A conditioning's `control` that hands a stock control the hints of the frames being denoised.

    Implements what core's sampler calls on a control (get_control, pre_run, cleanup, get_models,
    inference_memory_requirements, get_extra_hooks, previous_controlnet, extra_hooks, and since 0.23.0 the multi-GPU
    multigpu_clones, deepclone_multigpu and get_instance_for_device) by delegating to a copy of the stock control per
    window, made with its own public `copy`/`set_cond_hint`/`pre_run`, so core's classes are
    neither subclassed nor patched. Only the current window's hints are prepared on the device: memory follows the
    window, not the clip.
    """

    def __init__(self, control, hints: torch.Tensor, strength: float, percent_range: tuple[float, float], vae=None,
                 mask: torch.Tensor | None = None, spread: bool = False):
        self.control = control  # the loaded CONTROL_NET: only ever copied
        self.hints = hints  # [N, C, H, W], as core's set_cond_hint takes them
        self.mask = mask  # [M, H, W] or None
        self.strength, self.timestep_percent_range, self.vae, self.spread = strength, percent_range, vae, spread
        self.previous_controlnet = None
        self.extra_hooks = control.extra_hooks
        self._sampling = None  # pre_run's arguments, for the per-window copies
        self._window: tuple[tuple[int, ...] | None, object] = (None, None)  # (hint indices, stock copy for them)
        self.multigpu_clones: dict[torch.device, VideoControl] = {}  # this control on each other GPU of a run

    def frames_of_call(self, batch: int, batched_number: int, transformer_options: dict) -> tuple[list[int], int]:
        """The clip frames one call denoises (per cond/uncond chunk) and the clip's length."""
        return window_frames(transformer_options, batch // batched_number)

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        previous = None
        if self.previous_controlnet is not None:
            previous = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
        frames, total = self.frames_of_call(x_noisy.shape[0], batched_number, transformer_options)
        fit = hint_frames(self.hints.shape[0], total, self.spread)
        own = self._stock_for(tuple(fit[f] for f in frames)).get_control(x_noisy, t, cond, batched_number,
                                                                         transformer_options)
        if own is not None and self.mask is not None:
            fit = hint_frames(self.mask.shape[0], total, self.spread)
            own = self._masked(own, self.mask[[fit[f] for f in frames]].repeat(batched_number, 1, 1))
        return merge_controls(own, previous)

    def _stock_for(self, hint_indices: tuple[int, ...]):
        """The stock control set to these hints, kept while consecutive calls (cond, uncond) share the window."""
        if self._window[0] != hint_indices:
            self._release_window()
            stock = self._hinted(self.control.copy(), hint_indices)
            stock.pre_run(*self._sampling)
            self._window = (hint_indices, stock)
        return self._window[1]

    def _hinted(self, stock, hint_indices: tuple[int, ...]):
        """A fresh copy of the stock control, given the hints of one window."""
        return stock.set_cond_hint(self.hints[list(hint_indices)], self.strength, self.timestep_percent_range,
                                   vae=self.vae)

    @staticmethod
    def _masked(control: dict, mask: torch.Tensor) -> dict:
        """Residuals times the mask (one per batch entry), resized to each residual like core resizes hints."""
        resized = {}

        def at(residual):
            size = tuple(residual.shape[-2:])
            if size not in resized:
                m = comfy.utils.common_upscale(mask.unsqueeze(1).to(residual), size[1], size[0], "bilinear", "center")
                resized[size] = m
            return residual * resized[size]

        return {key: [None if r is None else at(r) for r in residuals] for key, residuals in control.items()}

    def _release_window(self):
        if self._window[1] is not None:
            self._window[1].cleanup()
        self._window = (None, None)

    def pre_run(self, model, percent_to_timestep_function):
        self._release_window()
        self._sampling = (model, percent_to_timestep_function)
        if self.previous_controlnet is not None:
            self.previous_controlnet.pre_run(model, percent_to_timestep_function)

    def cleanup(self):
        self._release_window()
        self._sampling = None
        if self.previous_controlnet is not None:
            self.previous_controlnet.cleanup()
        for clone in self.multigpu_clones.values():
            clone._release_window()
            clone._sampling = None

    def get_models(self):
        previous = self.previous_controlnet.get_models() if self.previous_controlnet is not None else []
        clones = [model for clone in self.multigpu_clones.values() for model in clone.control.get_models()]
        return previous + self.control.get_models() + clones

    def get_instance_for_device(self, device):
        return self.multigpu_clones.get(device, self)

    def deepclone_multigpu(self, load_device, autoregister: bool = False):
        """This control for another GPU of a multi-GPU run: the same hints over the stock control's own deep clone
        for that device. Core links the clones' previous controls per device itself."""
        clone = self._over(self.control.deepclone_multigpu(load_device))
        if autoregister:
            self.multigpu_clones[load_device] = clone
        return clone

    def inference_memory_requirements(self, dtype):
        previous = self.previous_controlnet
        return self.control.inference_memory_requirements(dtype) + (
            previous.inference_memory_requirements(dtype) if previous is not None else 0)

    def get_extra_hooks(self):
        hooks = [self.extra_hooks] if self.extra_hooks is not None else []
        return hooks + (self.previous_controlnet.get_extra_hooks() if self.previous_controlnet is not None else [])

    def set_previous_controlnet(self, control):
        self.previous_controlnet = control
        return self

    def copy(self):
        return self._over(self.control)

    def _over(self, control) -> "VideoControl":
        """This control's settings over another stock control (itself, or its clone for another GPU)."""
        return VideoControl(control, self.hints, self.strength, self.timestep_percent_range, self.vae, self.mask,
                            self.spread)


def attach_controls(positive, negative, make_control) -> list:
    """Both conditionings get one control per previous control (`make_control(previous)`), shared, so cond and
    uncond still batch."""
    controls, out = {}, []
    for conditioning in (positive, negative):
        entries = []
        for embedding, options in conditioning:
            previous = options.get("control")
            if previous not in controls:
                controls[previous] = make_control(previous)
            entries.append([embedding, {**options, "control": controls[previous], "control_apply_to_uncond": False}])
        out.append(entries)
    return out


def apply_video_controlnet(positive, negative, control_net, images, strength, start_percent, end_percent, spread,
                           vae=None, mask=None):
    hints = images[..., :3].movedim(-1, 1)  # IMAGE [N, H, W, C] -> [N, 3, H, W]; an alpha channel is not a hint
    if mask is not None and mask.ndim == 2:
        mask = mask.unsqueeze(0)
    return attach_controls(positive, negative, lambda previous: VideoControl(
        control_net, hints, strength, (start_percent, end_percent), vae, mask, spread).set_previous_controlnet(previous))

"""The initial-noise options, as OUTER_SAMPLE wrappers on a clone of the MODEL: they see the sampler's seeded noise
before sampling starts, so they work with ALCM_KSampler, core's KSampler and custom sampling alike.

- FreeNoise (set by ALCM_ContextOptions): the noise rescheduled for the context windows (samplers/noise.py). The
  pack's LCM sampler re-noises at every step, and fresh independent noise there would undo it after the first step:
  it reschedules each step's noise the same way (`free_noise_steps`; core's samplers draw their own).
- FreeInit (ALCM_FreeInit): the whole sampling run repeated; each later run starts from the previous result's low
  frequencies, diffused back to the first sigma with the first run's noise, joined to fresh high-frequency noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from comfy.patcher_extension import WrappersMP

from ..samplers.noise import freeinit_low_pass, freeinit_noise, free_noise

FREE_NOISE = "animatelcm_free_noise"  # the wrapper's key, and the model_options entry of its (length, overlap)
FREE_INIT = "animatelcm_free_init"


def _with_free_noise(context_length: int, context_overlap: int, executor, noise, latent_image, sampler, sigmas,
                     denoise_mask=None, callback=None, disable_pbar=False, seed=None, **kwargs):
    noise = free_noise(noise, context_length, context_overlap, seed or 0)
    return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs)


def add_free_noise(model, context_length: int, context_overlap: int) -> None:
    """On a clone the caller made: its sampling starts from FreeNoise for these windows.

    Wrappers run in the order their keys were added, the first outermost. FreeNoise must reschedule only the run's
    own noise, never the noise FreeInit restarts from (that would shuffle the frames of the clip it carries), so it
    goes outside a FreeInit added earlier in the graph: FreeInit's wrapper is moved after it."""
    free_init = list(model.get_wrappers(WrappersMP.OUTER_SAMPLE, FREE_INIT))
    model.remove_wrappers_with_key(WrappersMP.OUTER_SAMPLE, FREE_INIT)
    model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, FREE_NOISE,
                               partial(_with_free_noise, context_length, context_overlap))
    for wrapper in free_init:
        model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, FREE_INIT, wrapper)
    model.model_options[FREE_NOISE] = (context_length, context_overlap)


def free_noise_steps(model_options: dict, noise_sampler, seed: int | None):
    """A sampler's per-step noise, rescheduled like the initial noise when the model samples with FreeNoise."""
    windows = model_options.get(FREE_NOISE)
    if windows is None:
        return noise_sampler
    return lambda sigma, sigma_next: free_noise(noise_sampler(sigma, sigma_next), *windows, seed or 0)


@dataclass(frozen=True)
class FreeInit:
    iterations: int  # sampling runs in all: 1 is plain sampling
    filter_kind: str
    spatial_stop: float
    temporal_stop: float
    order: int = 4

    def __call__(self, executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                 disable_pbar=False, seed=None, **kwargs):
        out = executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs)
        if self.iterations < 2 or noise.abs().max() == 0:  # disabled noise: nothing to re-initialise
            return out
        model = executor.class_obj.model_patcher.model
        frames, _, height, width = noise.shape
        low_pass = freeinit_low_pass(frames, height, width, self.filter_kind, self.spatial_stop, self.temporal_stop,
                                     self.order)
        for iteration in range(1, self.iterations):
            fresh = torch.randn(noise.shape, generator=torch.Generator().manual_seed((seed or 0) + iteration))
            start = freeinit_noise(model.process_latent_in(out.float().cpu()), noise.float().cpu(), fresh,
                                   float(sigmas[0]), low_pass).to(noise.dtype)
            out = executor(start, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                           **kwargs)
        return out


def apply_free_init(model, free_init: FreeInit):
    m = model.clone()
    m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, FREE_INIT, free_init)
    return m

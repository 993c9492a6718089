"""Sampling a noise-prediction network with ComfyUI's own samplers, for sample videos and for the proof's table.

The student samples as the nodes sample it: AnimateLCM's timesteps, the LCM boundary conditions of ComfyUI's model
sampling, the pack's `sample_animatelcm`. The teacher samples with DDIM (ComfyUI's "ddim" is Euler on the same
schedule, `ddim_uniform` timesteps) or DPM-Solver++(2M), with classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import comfy.k_diffusion.sampling
import comfy.samplers

from ..patching.model_sampling import comfy_model_sampling
from ..samplers.lcm import sample_animatelcm
from ..samplers.schedule import T2V_ORIGINAL_STEPS, NoiseSchedule, lcm_timesteps
from .consistency import guided_eps

# net(x [B, F, C, H, W], timesteps [B], context [B, T, D]) -> noise prediction
NoiseNet = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("lcm", "ddim", "dpmpp_2m")
_SAMPLERS = {"lcm": sample_animatelcm, "ddim": comfy.k_diffusion.sampling.sample_euler,
             "dpmpp_2m": comfy.k_diffusion.sampling.sample_dpmpp_2m}


def model_sampling(lcm: bool):
    """ComfyUI's discrete model sampling on the linear schedule every SD1.5 motion model uses."""
    return comfy_model_sampling(NoiseSchedule(lcm_boundary=lcm))


def sigmas(method: str, steps: int, sampling) -> torch.Tensor:
    if method == "lcm":
        timesteps = torch.tensor(lcm_timesteps(steps, T2V_ORIGINAL_STEPS))
        return torch.cat([sampling.sigmas[timesteps].float(), torch.zeros(1)])
    return comfy.samplers.calculate_sigmas(sampling, "ddim_uniform", steps).float()


@torch.no_grad()
def sample(net: NoiseNet, noise: torch.Tensor, context: torch.Tensor, method: str, steps: int,
           uncond: torch.Tensor | None = None, cfg: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Clips [B, F, C, H, W] from standard-normal `noise` of that shape; `uncond` (one context) and `cfg` > 1 for
    classifier-free guidance (the student takes none). `seed` drives the LCM sampler's re-noising."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sampling = model_sampling(lcm=method == "lcm")
    levels = sigmas(method, steps, sampling).to(noise.device)

    def denoised(x, sigma, **_):
        x_in = sampling.calculate_input(sigma, x)
        t = sampling.timestep(sigma).round().long()
        if cfg == 1.0 or uncond is None:
            eps = net(x_in, t, context)
        else:
            both = net(torch.cat([x_in, x_in]), torch.cat([t, t]), torch.cat([context, uncond.expand_as(context)]))
            eps = guided_eps(*both.chunk(2), cfg - 1.0)
        return sampling.calculate_denoised(sigma, eps, x)

    x = sampling.noise_scaling(levels[0], noise, torch.zeros_like(noise), max_denoise=True)
    out = _SAMPLERS[method](denoised, x, levels, extra_args={"seed": seed}, disable=True)
    return sampling.inverse_noise_scaling(levels[-1], out)

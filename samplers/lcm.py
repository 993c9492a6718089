"""Multistep LCM sampling as a k-diffusion sampler function (the shape of comfy/k_diffusion/sampling.py).

Each step asks the model for its consistency estimate of the clean latent (the LCM boundary conditions live in the
model's sampling object) and re-noises it to the next noise level with fresh noise; the last estimate is the result.
"""

import torch
from tqdm.auto import trange


def fresh_noise_sampler(x: torch.Tensor, seed: int | None):
    """Noise for each re-noising step, drawn from the seed's CPU generator AFTER the initial noise.

    One generator for the initial latent and every later draw, as the official pipeline does, so no step re-uses
    the initial noise. (A generator restarted from the same seed, as core's default noise sampler is, gives back
    the initial noise at the first re-noise.) Drawing on the CPU keeps results identical across devices.
    """
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
        torch.randn(x.shape, generator=generator)  # the initial noise, already in x (comfy.sample.prepare_noise)
    return lambda sigma, sigma_next: torch.randn(x.shape, generator=generator).to(x)


@torch.no_grad()
def sample_animatelcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """`model(x, sigma)` returns the denoised estimate; x is in noise-level (sigma) units, as k-diffusion samplers use.

    For an epsilon model at noise level sigma, x = x0 + sigma * noise, so re-noising a clean estimate is
    `denoised + sigma_next * z` (= sqrt(abar) * denoised + sqrt(1 - abar) * z in the official pipeline's units).
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = fresh_noise_sampler(x, extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x

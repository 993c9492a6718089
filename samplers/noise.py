"""Initial noise for clips sampled in context windows.

FreeNoise (Qiu et al., "FreeNoise: Tuning-Free Longer Video Diffusion via Noise Rescheduling", 2023): with independent
noise per frame, each window starts from noise unrelated to its neighbours', and the windows drift apart into
visible seams. Rescheduled noise repeats the earlier frames' noise, shuffled, so every window starts from the same
frame noises in another order. The block rule is the one AnimateDiff-Evolved users already know (windows of L frames
overlapping by O advance by L - O frames; the frames a window adds are a seeded permutation of the block L frames
earlier), so a workflow moved between the packs keeps its meaning.
"""

from __future__ import annotations

import torch

NOISE_TYPES = ("default", "FreeNoise")


def free_noise(noise: torch.Tensor, context_length: int, context_overlap: int, seed: int) -> torch.Tensor:
    """`noise` [frames, ...] rescheduled for windows of `context_length` overlapping by `context_overlap`: the first
    window's frames stay, each later block of L - O frames is a permutation (from `seed`) of the block L frames
    before it, in order, so later blocks may repeat repeated noise. A clip of at most one window is unchanged."""
    frames = noise.shape[0]
    if frames <= context_length:
        return noise
    advance = context_length - context_overlap
    if advance < 1:
        raise ValueError(f"context_overlap ({context_overlap}) must be smaller than context_length ({context_length})")
    generator = torch.Generator().manual_seed(seed)
    out = noise.clone()
    for start in range(0, frames - context_length, advance):
        place = start + context_length
        count = min(advance, frames - place)
        order = torch.randperm(advance, generator=generator)[:count] + start
        out[place:place + count] = out[order.to(out.device)]
    return out


# FreeInit (Wu et al., "FreeInit: Bridging Initialization Gap in Video Diffusion Models", 2023): the noise a clip is
# sampled from has a low-frequency part that training never saw independent of the video; re-sampling from the
# sampled clip's low frequencies, diffused back to the start, joined to fresh high frequencies, makes the clip more
# consistent over time. Each iteration is a whole sampling run.
FREEINIT_FILTERS = ("gaussian", "butterworth", "ideal", "box")


def freeinit_low_pass(frames: int, height: int, width: int, kind: str, spatial_stop: float, temporal_stop: float,
                      order: int = 4) -> torch.Tensor:
    """[frames, 1, height, width] weights of the low frequencies (centred, as after fftshift), 1 at the centre.

    Distance from the centre, normalised to 1 at the edges, with time scaled by spatial_stop / temporal_stop so the
    cut-off is spatial_stop in space and temporal_stop in time: gaussian exp(-d²/2s²), butterworth 1/(1+(d²/s²)^n),
    ideal 1 within d² <= 2s (the upstream definition), box a centred block of half-size round(size/2 * stop)."""
    if kind not in FREEINIT_FILTERS:
        raise ValueError(f"filter must be one of {', '.join(FREEINIT_FILTERS)}, got {kind!r}")
    if spatial_stop <= 0 or temporal_stop <= 0:
        return torch.zeros(frames, 1, height, width)
    if kind == "box":
        mask = torch.zeros(frames, 1, height, width)
        ct, ch, cw = frames // 2, height // 2, width // 2
        dt, dh, dw = round(ct * temporal_stop), round(ch * spatial_stop), round(cw * spatial_stop)
        mask[ct - dt:ct + dt, :, ch - dh:ch + dh, cw - dw:cw + dw] = 1.0
        return mask
    t = (spatial_stop / temporal_stop) * (2 * torch.arange(frames) / frames - 1)
    h, w = 2 * torch.arange(height) / height - 1, 2 * torch.arange(width) / width - 1
    d2 = (t[:, None, None] ** 2 + h[None, :, None] ** 2 + w[None, None, :] ** 2).unsqueeze(1).float()
    if kind == "gaussian":
        return torch.exp(-d2 / (2 * spatial_stop ** 2))
    if kind == "butterworth":
        return 1 / (1 + (d2 / spatial_stop ** 2) ** order)
    return (d2 <= spatial_stop * 2).float()


def freeinit_noise(sampled: torch.Tensor, initial_noise: torch.Tensor, fresh_noise: torch.Tensor, sigma: float,
                   low_pass: torch.Tensor) -> torch.Tensor:
    """The next iteration's unit-variance starting noise [frames, C, H, W] for an eps model sampled from `sigma`:
    the sampled clip (model units) diffused back with the first iteration's noise, z = √ᾱ·x0 + √(1-ᾱ)·ε with
    ᾱ = 1/(1+σ²), its low frequencies (3-D FFT over frames, height, width) kept and the rest from `fresh_noise`."""
    alpha_bar = 1.0 / (1.0 + sigma ** 2)
    diffused = alpha_bar ** 0.5 * sampled.float() + (1 - alpha_bar) ** 0.5 * initial_noise.float()
    dims = (0, 2, 3)

    def spectrum(x):
        return torch.fft.fftshift(torch.fft.fftn(x, dim=dims), dim=dims)

    mixed = spectrum(diffused) * low_pass + spectrum(fresh_noise.float()) * (1 - low_pass)
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real

"""The trainer's samplers (ComfyUI's Euler-as-DDIM and DPM-Solver++(2M), the pack's LCM sampler) on the linear
schedule: with the exact noise prediction of a known clean clip, every one of them returns that clip; guidance mixes
the two predictions as (1 + w) eps(c) - w eps(empty)."""

import pytest
import torch

from animatelcm.samplers.schedule import NoiseSchedule
from animatelcm.training.sampling import model_sampling, sample, sigmas

ABAR = NoiseSchedule().alphas_cumprod()
CLEAN = torch.rand(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def oracle(x, t, context):
    """The noise that takes CLEAN to x at timestep t (written from x_t = sqrt(abar) x0 + sqrt(1 - abar) eps)."""
    abar = ABAR[t].float().view(-1, 1, 1, 1, 1)
    return (x - abar.sqrt() * CLEAN.repeat(x.shape[0] // CLEAN.shape[0], 1, 1, 1, 1)) / (1 - abar).sqrt()


@pytest.mark.parametrize("method, steps", [("ddim", 1), ("ddim", 4), ("ddim", 50), ("dpmpp_2m", 2), ("lcm", 1),
                                           ("lcm", 4)])
def test_every_sampler_lands_on_the_clip_the_noise_prediction_points_to(method, steps):
    noise = torch.randn(CLEAN.shape, generator=torch.Generator().manual_seed(1))
    out = sample(oracle, noise, torch.zeros(2, 1, 1), method, steps)
    torch.testing.assert_close(out, CLEAN, rtol=0, atol=5e-5)


def test_the_schedules_are_the_reference_ones():
    sampling = model_sampling(lcm=True)
    torch.testing.assert_close(sampling.sigmas.double(), ((1 - ABAR) / ABAR).sqrt(), rtol=0, atol=1e-5)
    lcm = sigmas("lcm", 4, sampling)
    torch.testing.assert_close(lcm, torch.tensor([25.1461, 6.5572, 2.2760, 0.8670, 0.0]), rtol=0, atol=1e-3)
    assert len(sigmas("ddim", 50, model_sampling(lcm=False))) == 51


def test_guidance_extrapolates_from_the_empty_prompt():
    seen = []

    def net(x, t, context):  # eps = the context's value everywhere
        seen.append(x.shape[0])
        return context.view(-1, 1, 1, 1, 1).expand_as(x) * 0 + context.view(-1, 1, 1, 1, 1)

    noise = torch.zeros(1, 1, 1, 2, 2)
    guided = sample(net, noise, torch.full((1, 1, 1), 0.5), "ddim", 1, uncond=torch.full((1, 1, 1), 0.1), cfg=3.0)
    plain = sample(net, noise, torch.full((1, 1, 1), 1.3), "ddim", 1)  # 0.1 + 3 (0.5 - 0.1) = 1.3
    torch.testing.assert_close(guided, plain)
    assert seen == [2, 1]  # one batched pass for both predictions, one without guidance

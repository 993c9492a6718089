"""The multistep LCM sampler function against a loop written from the reference formulas."""

import torch

from animatelcm.samplers.lcm import fresh_noise_sampler, sample_animatelcm


def test_renoising_never_repeats_the_initial_noise():
    x = torch.zeros(2, 4, 3, 3)
    draws = torch.Generator().manual_seed(5)
    initial, first, second = (torch.randn(x.shape, generator=draws) for _ in range(3))
    sampler = fresh_noise_sampler(x, 5)
    assert torch.equal(sampler(1.0, 0.5), first) and torch.equal(sampler(0.5, 0.2), second)
    assert not torch.equal(first, initial)


def test_each_step_denoises_then_renoises_to_the_next_level():
    sigmas = torch.tensor([6.0, 2.0, 0.5, 0.0])
    x = torch.randn(3, 2, 4, 4, generator=torch.manual_seed(0)) * sigmas[0]
    seen = []

    def model(x, sigma, **extra):  # a toy denoiser: shrink towards zero, more at high noise
        seen.append(float(sigma[0]))
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    steps = []
    out = sample_animatelcm(model, x, sigmas, extra_args={"seed": 9}, callback=steps.append, disable=True)

    draws = torch.Generator().manual_seed(9)
    torch.randn(x.shape, generator=draws)  # the initial noise
    expected = x
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        expected = expected / (1 + sigma ** 2)
        if sigma_next > 0:
            expected = expected + sigma_next * torch.randn(x.shape, generator=draws)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert seen == [6.0, 2.0, 0.5]
    assert [s["i"] for s in steps] == [0, 1, 2]

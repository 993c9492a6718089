"""The consistency-distillation math against the reference's formulas and numbers (sections 3 and 6)."""

import math

import pytest
import torch

from animatelcm.samplers.schedule import NoiseSchedule, boundary_scalings
from animatelcm.training.consistency import (consistency_function, ddim_step, ema_update, guided_eps,
                                             noise_loss_weights, predicted_x0, pseudo_huber)

ABAR = NoiseSchedule().alphas_cumprod()


def test_the_consistency_function_is_exactly_the_identity_at_the_boundary():
    c_skip, c_out = boundary_scalings(torch.tensor([0]))
    assert c_skip.item() == 1.0 and c_out.item() == 0.0
    x, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    assert torch.equal(consistency_function(x, eps, torch.tensor([0, 0, 0]), ABAR), x)


def test_away_from_the_boundary_it_is_the_reference_mix():
    t = torch.tensor([499])
    s = 10 * 499
    c_skip, c_out = 0.25 / (s ** 2 + 0.25), s / math.sqrt(s ** 2 + 0.25)
    x, eps = torch.randn(1, 4, 2, 2, dtype=torch.float64), torch.randn(1, 4, 2, 2, dtype=torch.float64)
    x0 = (x - math.sqrt(1 - ABAR[499]) * eps) / math.sqrt(ABAR[499])
    torch.testing.assert_close(consistency_function(x, eps, t, ABAR), c_out * x0 + c_skip * x, rtol=0, atol=1e-12)


def test_ddim_with_the_true_noise_lands_on_the_forward_process():
    x0, eps = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, 8, dtype=torch.float64)
    t, s = torch.tensor([819, 519]), torch.tensor([799, 499])  # skip k = 20
    x_t = ABAR[t].sqrt().view(-1, 1, 1, 1) * x0 + (1 - ABAR[t]).sqrt().view(-1, 1, 1, 1) * eps
    expected = ABAR[s].sqrt().view(-1, 1, 1, 1) * x0 + (1 - ABAR[s]).sqrt().view(-1, 1, 1, 1) * eps
    torch.testing.assert_close(ddim_step(x_t, eps, t, s, ABAR), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(predicted_x0(x_t, eps, t, ABAR), x0, rtol=0, atol=1e-12)


def test_guidance_and_pseudo_huber():
    c, u = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(guided_eps(c, u, 0.0), c)
    torch.testing.assert_close(guided_eps(c, u, torch.tensor([1.0, 7.0])),
                               torch.stack([2 * c[0] - u[0], 8 * c[1] - 7 * u[1]]))
    zero = torch.zeros(10)
    assert pseudo_huber(zero, zero).item() == 0.0
    # small residuals: nearly quadratic, r^2 / 2c to first order; the exact value is the formula's
    assert pseudo_huber(torch.full((10,), 1e-4), zero, c=0.001).item() == pytest.approx(
        math.sqrt(1e-8 + 1e-6) - 1e-3, rel=1e-4)
    assert pseudo_huber(torch.full((10,), 1e-4), zero, c=0.001).item() == pytest.approx(1e-8 / 0.002, rel=0.01)
    assert pseudo_huber(torch.full((10,), 3.0), zero, c=0.001).item() == pytest.approx(3.0 - 0.001, rel=1e-6)


def test_ema_moves_the_target_towards_the_online_weights():
    target, online = [torch.zeros(3)], [torch.ones(3)]
    ema_update(target, online, 0.95)
    torch.testing.assert_close(target[0], torch.full((3,), 0.05))
    ema_update(target, online, 1.0)
    torch.testing.assert_close(target[0], torch.full((3,), 0.05))


def test_noise_loss_weights_plain_min_snr_and_v():
    t = torch.tensor([0, 249, 499, 999])
    assert torch.equal(noise_loss_weights(ABAR, t), torch.ones(4))
    # min-SNR-5: 1 where SNR <= 5 (sigma = 1/sqrt(SNR) >= 0.447, every t here but 0), 5 / SNR below
    snr0 = ABAR[0].item() / (1 - ABAR[0].item())
    torch.testing.assert_close(noise_loss_weights(ABAR, t, min_snr_gamma=5.0),
                               torch.tensor([5 / snr0, 1.0, 1.0, 1.0]))
    # v: MSE / abar with abar from the betas by hand, over its mean on the 1000 steps
    betas = [0.00085 + (0.012 - 0.00085) * i / 999 for i in range(1000)]
    abar, product = [], 1.0
    for beta in betas:
        product *= 1 - beta
        abar.append(product)
    mean = sum(1 / a for a in abar) / 1000
    weights = noise_loss_weights(ABAR, t, v=True)
    torch.testing.assert_close(weights, torch.tensor([1 / abar[i] / mean for i in t.tolist()]), rtol=1e-6, atol=0)
    assert weights[3] / weights[1] > 100  # t = 999 counts over a hundred times t = 249
    with pytest.raises(ValueError, match="choose one"):
        noise_loss_weights(ABAR, t, min_snr_gamma=5.0, v=True)

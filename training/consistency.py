"""Consistency-distillation math (LCM / AnimateLCM, docs/reference.md sections 3 and 6).

Plain functions on tensors, in the DDPM x_t space of an epsilon-prediction model, for the trainer to compose:
the student's consistency function f(x_t, t) = c_out(t) x0(x_t, eps) + c_skip(t) x_t (exact at the boundary:
f(x, 0) = x), the target from one DDIM step of the classifier-free-guided teacher from t_{n+k} to t_n, the
pseudo-Huber distance, and the EMA that makes the target network.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..samplers.schedule import boundary_scalings


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).reshape(-1, *[1] * (like.ndim - 1))


def predicted_x0(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    abar = _per_sample(alphas_cumprod[t], x_t)
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def consistency_function(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor,
                         alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """f(x_t, t) for a model's noise prediction `eps` at integer timesteps `t` (one per sample)."""
    c_skip, c_out = boundary_scalings(t)
    return _per_sample(c_out, x_t) * predicted_x0(x_t, eps, t, alphas_cumprod) + _per_sample(c_skip, x_t) * x_t


def guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: torch.Tensor | float) -> torch.Tensor:
    """The CFG-augmented teacher: (1 + w) eps(c) - w eps(empty), w one per sample or a number."""
    w = _per_sample(torch.as_tensor(w, dtype=eps_cond.dtype).flatten(), eps_cond) if torch.is_tensor(w) else w
    return (1 + w) * eps_cond - w * eps_uncond


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
              alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step from timestep t to the earlier s (the distillation's ODE solver): keeps x0 and
    eps, moves the noise level."""
    x0 = predicted_x0(x_t, eps, t, alphas_cumprod)
    abar_s = _per_sample(alphas_cumprod[s], x_t)
    return abar_s.sqrt() * x0 + (1 - abar_s).sqrt() * eps


def noise_loss_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, min_snr_gamma: float = 0.0,
                       v: bool = False) -> torch.Tensor:
    """Per-sample weights of a teacher's noise-prediction MSE at timesteps `t`. Plain MSE weighs the high-noise steps,
    where the layout and the motion are decided, least: there an error in x0 reaches the noise only scaled by
    abar / (1 - abar). `v`: v-prediction's loss, MSE / abar, scaled to mean 1 over the schedule (with it the proof's
    centre-data teacher follows the direction word: docs/proof.md). `min_snr_gamma`: min(SNR, gamma) / SNR, less
    weight on the easy low-noise steps (Hang et al. 2023)."""
    abar = alphas_cumprod.double()
    if v and min_snr_gamma:
        raise ValueError("choose one loss weighting: v or min-SNR")
    if v:
        return ((1 / abar) / (1 / abar).mean())[t].float()
    if min_snr_gamma:
        snr = abar[t] / (1 - abar[t])
        return (snr.clamp(max=min_snr_gamma) / snr).float()
    return torch.ones(t.shape, dtype=torch.float32, device=t.device)


def pseudo_huber(prediction: torch.Tensor, target: torch.Tensor, c: float = 0.001) -> torch.Tensor:
    """mean of sqrt(r^2 + c^2) - c, r the elementwise difference: quadratic for |r| << c, linear beyond."""
    r = prediction.float() - target.float()
    return ((r ** 2 + c ** 2).sqrt() - c).mean()


@torch.no_grad()
def ema_update(target: Iterable[torch.Tensor], online: Iterable[torch.Tensor], decay: float) -> None:
    """target <- decay * target + (1 - decay) * online, in place (the target network theta-)."""
    for t, o in zip(target, online, strict=True):
        t.mul_(decay).add_(o.detach().to(t.dtype), alpha=1 - decay)

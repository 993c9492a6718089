"""The AnimateLCM noise schedule and timestep grid: the one home of these facts (docs/reference.md, sections 3 and 6).

Every SD1.5 motion model (AnimateLCM, AnimateDiff) was trained on 1000 steps of LINEAR betas 0.00085 -> 0.012
(ComfyUI calls that "sqrt_linear"), not SD1.5's scaled_linear; AnimateLCM-I2V ends at 0.014. The distilled models
add LCM's boundary conditions, f(x, t) = c_out(t) x0 + c_skip(t) x with c_skip -> 1 at t = 0.

LCM distils the model on a coarse grid of `original_steps` timesteps, t = (1000 / original_steps) * k - 1; inference
takes `steps` evenly spaced entries of that grid, from the noisiest. AnimateLCM-T2V was distilled with 100 grid
points, AnimateLCM-I2V with 200 (diffusers defaults to 50, which lands between AnimateLCM's points).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

TRAIN_TIMESTEPS = 1000
T2V_ORIGINAL_STEPS = 100
I2V_ORIGINAL_STEPS = 200

BETA_START = 0.00085
BETA_END = 0.012
I2V_BETA_END = 0.014  # AnimateLCM-I2V's own; a user knob between 0.012 and 0.016

# LCM's boundary conditions: s = TIMESTEP_SCALING * t, c_skip = SIGMA_DATA^2 / (s^2 + SIGMA_DATA^2).
TIMESTEP_SCALING = 10.0
SIGMA_DATA = 0.5

# The grid of the schedule other packs use for AnimateLCM (core's ModelSamplingDiscrete "lcm", AnimateDiff-Evolved's
# default for AnimateLCM): 50 points, t = 20k - 1, so 4 steps visit 999, 759, 499, 259.
COMMUNITY_ORIGINAL_STEPS = 50

# The user's beta_schedule choices, named as diffusers names them; "auto" is the motion model's own (the faithful
# one), COMMUNITY the schedule most shared workflows sample AnimateLCM with (said to flicker less; not the paper's).
COMMUNITY = "scaled_linear + LCM, 50-point grid (community)"
BETA_SCHEDULE_CHOICES = ("auto", "linear", "scaled_linear (SD1.5)", COMMUNITY)


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete-time epsilon-prediction schedule: what a model's sampling is built from, and stored with it.

    `betas` is "linear" (the motion models' training schedule) or "scaled_linear" (SD1.5's own); `lcm_boundary`
    adds LCM's boundary conditions to the denoised estimate; `original_steps` is the LCM grid the scheduler takes
    its timesteps from (0: the motion model's own, 100 for AnimateLCM-T2V and 200 for I2V).
    """

    betas: str = "linear"
    beta_start: float = BETA_START
    beta_end: float = BETA_END
    lcm_boundary: bool = False
    original_steps: int = 0

    @classmethod
    def for_motion_model(cls, choice: str, animatelcm: bool, image_encoder: bool) -> NoiseSchedule:
        """The schedule a user's beta_schedule choice means for a motion model: `auto` is the model's own (LCM
        boundary conditions for AnimateLCM, betas ending at 0.014 for I2V); `scaled_linear (SD1.5)` is SD1.5's;
        COMMUNITY is SD1.5's betas with LCM's boundary conditions on a 50-point grid, for any motion model."""
        if choice not in BETA_SCHEDULE_CHOICES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULE_CHOICES}, got {choice!r}")
        if choice == "scaled_linear (SD1.5)":
            return cls(betas="scaled_linear")
        if choice == COMMUNITY:
            return cls(betas="scaled_linear", lcm_boundary=True, original_steps=COMMUNITY_ORIGINAL_STEPS)
        auto = choice == "auto"
        return cls(beta_end=I2V_BETA_END if auto and image_encoder else BETA_END, lcm_boundary=auto and animatelcm)

    def with_beta_end(self, beta_end: float) -> NoiseSchedule:
        """A linear schedule ending at `beta_end`; SD1.5's scaled_linear keeps its own end."""
        return self if self.betas == "scaled_linear" else replace(self, beta_end=beta_end)

    def alphas_cumprod(self, steps: int = TRAIN_TIMESTEPS) -> torch.Tensor:
        """abar_t for t = 0 .. steps - 1, float64."""
        if self.betas == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, steps, dtype=torch.float64)
        else:
            betas = torch.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, steps, dtype=torch.float64) ** 2
        return torch.cumprod(1.0 - betas, dim=0)


def boundary_scalings(t: torch.Tensor, timestep_scaling: float = TIMESTEP_SCALING,
                      sigma_data: float = SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of LCM's boundary conditions: s = scaling * t, c_skip = sd^2 / (s^2 + sd^2),
    c_out = s / sqrt(s^2 + sd^2); at t = 0 exactly (1, 0)."""
    s = timestep_scaling * t.to(torch.float64)
    c_skip = sigma_data ** 2 / (s ** 2 + sigma_data ** 2)
    c_out = s / (s ** 2 + sigma_data ** 2).sqrt()
    return c_skip, c_out


def lcm_timesteps(steps: int, original_steps: int = T2V_ORIGINAL_STEPS, denoise: float = 1.0,
                  train_timesteps: int = TRAIN_TIMESTEPS) -> list[int]:
    """The `steps` timesteps an LCM visits, noisiest first.

    `denoise` < 1 keeps only the first `denoise` fraction of the grid (the low-noise end), as diffusers' LCM
    img2img `strength` does, so video-to-video starts from a partly noised input.
    """
    if not 1 <= steps <= original_steps:
        raise ValueError(f"steps must be between 1 and original_steps ({original_steps}), got {steps}")
    if train_timesteps % original_steps:
        raise ValueError(f"original_steps must divide {train_timesteps}, got {original_steps}")
    spacing = train_timesteps // original_steps
    grid_points = int(original_steps * denoise)
    if grid_points < steps:
        raise ValueError(f"denoise {denoise} leaves {grid_points} of the {original_steps} grid timesteps, fewer than "
                         f"the {steps} steps: raise denoise or lower steps")
    grid = [spacing * k - 1 for k in range(grid_points, 0, -1)]
    return [grid[int(i * grid_points / steps)] for i in range(steps)]

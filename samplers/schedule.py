"""The AnimateLCM timestep schedule (docs/reference.md, section 3).

LCM distils the model on a coarse grid of `original_steps` timesteps, t = (1000 / original_steps) * k - 1; inference
takes `steps` evenly spaced entries of that grid, from the noisiest. AnimateLCM-T2V was distilled with 100 grid
points, AnimateLCM-I2V with 200 (diffusers defaults to 50, which lands between AnimateLCM's points).
"""

TRAIN_TIMESTEPS = 1000
T2V_ORIGINAL_STEPS = 100
I2V_ORIGINAL_STEPS = 200


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

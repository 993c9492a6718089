"""The AnimateLCM-SVD-xt noise levels (docs/reference.md, section 5).

AnimateLCM-SVD-xt was consistency-distilled on a fixed grid of 40 Karras noise levels (rho 7) from sigma_max = 700
down to sigma_min, grid point k at ramp k / 39. Inference with N steps visits every (40 // N)-th grid point from the
noisiest, then 0: grid points 0, 10, 20, 30 for 4 steps. At 1-8 steps the last grid point (sigma_min itself) is
never visited, so the reference table does not show sigma_min; it pins it through the visited points. Solving the
4-step entry 0.4969 (ramp 30/39) for sigma_min gives 0.0020002, the 128.5637 entry (ramp 10/39) 0.0020000008; 0.002
(SVD's own sigma_min) reproduces every entry of the 1-, 2-, 4- and 8-step rows at the printed precision, and any
value outside [0.00199999, 0.00200001] changes at least one entry. Core's `karras` scheduler on SVD's sigma range
spaces N points over the whole range, ending at sigma_min, so it does not land on the distilled grid.
"""

SIGMA_MIN = 0.002
SIGMA_MAX = 700.0
RHO = 7.0
GRID_POINTS = 40
MAX_STEPS = 8  # the range AnimateLCM-SVD-xt was made for (1-8 steps)


def karras_grid(points: int = GRID_POINTS, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                rho: float = RHO) -> list[float]:
    """Karras et al. (2022) noise levels, noisiest first: (max^(1/rho) + r_k (min^(1/rho) - max^(1/rho)))^rho,
    r_k = k / (points - 1).

    The two ends are set exactly (the power of the root gives 699.9999999999994, not 700).
    """
    top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    inner = [(top + k / (points - 1) * (bottom - top)) ** rho for k in range(1, points - 1)]
    return [sigma_max, *inner, sigma_min]


def svd_sigmas(steps: int, sigma_min: float = SIGMA_MIN) -> list[float]:
    """The `steps` AnimateLCM-SVD noise levels followed by 0, e.g. [700, 128.5637, 13.6784, 0.4969, 0] for 4.

    Grid points 0, s, 2s, ... (s = 40 // steps) of the 40-point grid. `sigma_min` is only there to show what a
    wrong value does (tests' negative controls); the model was distilled with the default.
    """
    if not 1 <= steps <= GRID_POINTS:
        raise ValueError(f"steps must be between 1 and {GRID_POINTS} (the distillation grid), got {steps}")
    grid = karras_grid(sigma_min=sigma_min)
    stride = GRID_POINTS // steps
    return [grid[i * stride] for i in range(steps)] + [0.0]

"""The AnimateLCM-SVD sigmas against the reference table (docs/reference.md, section 5)."""

import pytest

from animatelcm.samplers.svd_schedule import karras_grid, svd_sigmas

# Copied from the doc as printed; each entry is checked to the decimals it is printed with.
REFERENCE = {
    1: ["700", "0"],
    2: ["700", "13.6784", "0"],
    4: ["700", "128.5637", "13.6784", "0.4969", "0"],
    8: ["700", "315.74", "128.56", "45.85", "13.678", "3.167", "0.4969", "0.0398", "0"],
}


def decimals(printed: str) -> int:
    return len(printed.partition(".")[2])


@pytest.mark.parametrize("steps", sorted(REFERENCE))
def test_svd_sigmas_match_the_reference_table(steps):
    sigmas = svd_sigmas(steps)
    assert len(sigmas) == len(REFERENCE[steps])
    for sigma, printed in zip(sigmas, REFERENCE[steps]):
        assert round(sigma, decimals(printed)) == float(printed), (sigma, printed)
    assert sigmas[0] == 700.0 and sigmas[-1] == 0.0


def test_the_steps_visit_the_distillation_grid():
    grid = karras_grid()
    assert len(grid) == 40 and grid[0] == 700.0 and grid[-1] == 0.002
    assert svd_sigmas(4)[:-1] == [grid[0], grid[10], grid[20], grid[30]]
    assert svd_sigmas(3)[:-1] == [grid[0], grid[13], grid[26]]  # 40 // 3 = 13


@pytest.mark.parametrize("sigma_min", [0.001998, 0.002002, 0.02])
def test_another_sigma_min_breaks_the_table(sigma_min):
    """The table pins sigma_min to 0.002: 0.1% off already moves the 4-step row at its printed precision."""
    sigmas = svd_sigmas(4, sigma_min=sigma_min)
    assert [round(s, 4) for s in sigmas[1:4]] != [128.5637, 13.6784, 0.4969]


@pytest.mark.parametrize("steps", [0, 41])
def test_impossible_step_counts_are_refused(steps):
    with pytest.raises(ValueError, match="steps must be between 1 and 40"):
        svd_sigmas(steps)

"""The noise schedules and the LCM timestep grid against the reference (docs/reference.md, sections 3 and 4)."""

import math

import pytest
import torch

from animatelcm.samplers.schedule import COMMUNITY, NoiseSchedule, boundary_scalings, lcm_timesteps

ABAR = NoiseSchedule().alphas_cumprod()

REFERENCE = {
    1: [999],
    2: [999, 499],
    4: [999, 749, 499, 249],
    6: [999, 839, 669, 499, 339, 169],
    8: [999, 879, 749, 629, 499, 379, 249, 129],
}


@pytest.mark.parametrize("steps", sorted(REFERENCE))
def test_t2v_timesteps_match_the_reference_table(steps):
    assert lcm_timesteps(steps) == REFERENCE[steps]


def test_other_grids():
    assert lcm_timesteps(4, original_steps=50) == [999, 759, 499, 259]  # diffusers' default grid
    assert lcm_timesteps(4, original_steps=200) == [999, 749, 499, 249]
    assert lcm_timesteps(3, original_steps=200) == [999, 669, 334]


def test_denoise_keeps_the_low_noise_part_of_the_grid():
    assert lcm_timesteps(4, denoise=0.5) == [499, 379, 249, 129]
    assert lcm_timesteps(2, denoise=0.3) == [299, 149]


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be between 1 and original_steps"),
    ({"steps": 101}, "steps must be between 1 and original_steps"),
    ({"steps": 4, "original_steps": 300}, "original_steps must divide 1000"),
    ({"steps": 4, "denoise": 0.02}, "denoise 0.02 leaves 2 of the 100 grid timesteps"),
])
def test_impossible_schedules_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lcm_timesteps(**kwargs)


@pytest.mark.parametrize("t, sigma", [(999, 25.1461), (749, 6.5572), (499, 2.2760), (249, 0.8670)])
def test_linear_schedule_gives_the_reference_noise_levels(t, sigma):
    assert math.sqrt((1 - ABAR[t]) / ABAR[t]) == pytest.approx(sigma, abs=5e-5)


def test_scaled_linear_is_sd15s_schedule():
    """SD1.5's scaled_linear: betas linear in their square root, so abar differs from the linear schedule's."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    expected = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(NoiseSchedule(betas="scaled_linear").alphas_cumprod(), expected, rtol=0, atol=0)
    assert not torch.allclose(NoiseSchedule().alphas_cumprod(), expected)


@pytest.mark.parametrize("choice, animatelcm, image_encoder, expected", [
    ("auto", True, False, NoiseSchedule("linear", 0.00085, 0.012, lcm_boundary=True)),
    ("auto", True, True, NoiseSchedule("linear", 0.00085, 0.014, lcm_boundary=True)),
    ("auto", False, False, NoiseSchedule("linear", 0.00085, 0.012, lcm_boundary=False)),
    ("linear", True, True, NoiseSchedule("linear", 0.00085, 0.012, lcm_boundary=False)),
    ("scaled_linear (SD1.5)", True, False, NoiseSchedule("scaled_linear", 0.00085, 0.012, lcm_boundary=False)),
    (COMMUNITY, True, True, NoiseSchedule("scaled_linear", 0.00085, 0.012, lcm_boundary=True, original_steps=50)),
    (COMMUNITY, False, False, NoiseSchedule("scaled_linear", 0.00085, 0.012, lcm_boundary=True, original_steps=50)),
])
def test_a_beta_schedule_choice_means_one_schedule(choice, animatelcm, image_encoder, expected):
    assert NoiseSchedule.for_motion_model(choice, animatelcm, image_encoder) == expected


def test_beta_end_ends_a_linear_schedule_and_leaves_sd15s_alone():
    assert NoiseSchedule(lcm_boundary=True).with_beta_end(0.016) == NoiseSchedule("linear", 0.00085, 0.016, True)
    sd15 = NoiseSchedule(betas="scaled_linear")
    assert sd15.with_beta_end(0.016) is sd15


def test_an_unknown_choice_names_the_choices():
    with pytest.raises(ValueError, match="auto"):
        NoiseSchedule.for_motion_model("cosine", True, False)


def test_boundary_scalings_are_lcms():
    t = torch.tensor([0, 249, 999])
    c_skip, c_out = boundary_scalings(t)
    s = 10.0 * t.double()
    torch.testing.assert_close(c_skip, 0.25 / (s ** 2 + 0.25), rtol=0, atol=1e-15)
    torch.testing.assert_close(c_out, s / (s ** 2 + 0.25).sqrt(), rtol=0, atol=1e-15)
    assert (c_skip[0].item(), c_out[0].item()) == (1.0, 0.0)

"""The LCM timestep schedule against the reference table (docs/reference.md, section 3)."""

import pytest

from animatelcm.samplers.schedule import lcm_timesteps

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

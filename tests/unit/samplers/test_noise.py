"""FreeNoise: each window's new frames start from a seeded shuffle of earlier frames' noise. FreeInit's low-pass
filters and restart noise."""

import math

import pytest
import torch

from animatelcm.samplers.noise import FREEINIT_FILTERS, free_noise, freeinit_low_pass, freeinit_noise


def _noise(frames, seed=0):
    return torch.randn(frames, 4, 3, 3, generator=torch.Generator().manual_seed(seed))


def _sources(out, noise):
    """For each output frame, the index of the input frame it equals (every frame's noise is distinct)."""
    flat_out, flat_in = out.flatten(1), noise.flatten(1)
    return [int(torch.nonzero((flat_in == row).all(dim=1))[0]) for row in flat_out]


@pytest.mark.parametrize("frames", [8, 16])
def test_a_clip_of_at_most_one_window_keeps_the_default_noise(frames):
    noise = _noise(frames)
    assert torch.equal(free_noise(noise, 16, 4, seed=7), noise)


def test_each_later_block_is_a_permutation_of_the_block_a_window_earlier():
    noise = _noise(40)
    sources = _sources(free_noise(noise, 16, 4, seed=7), noise)
    assert sources[:16] == list(range(16))  # the first window as sampled
    # windows advance by 12 frames: frames 16..27 repeat 0..11, 28..39 repeat what frames 12..23 hold now
    assert sorted(sources[16:28]) == list(range(12)) and sources[16:28] != list(range(12))
    assert sorted(sources[28:40]) == sorted(sources[12:24])


def test_a_short_last_block_takes_the_first_frames_of_its_permutation():
    noise = _noise(30)
    sources = _sources(free_noise(noise, 16, 4, seed=3), noise)
    assert sorted(sources[16:28]) == list(range(12))
    assert set(sources[28:30]) <= set(sources[12:24]) and len(set(sources[28:30])) == 2


def test_same_seed_same_noise_another_seed_another_order():
    noise = _noise(64)
    first, again, other = (free_noise(noise, 16, 4, seed=s) for s in (5, 5, 6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(noise, _noise(64))  # the input is not changed in place


def test_an_overlap_as_long_as_the_window_is_refused():
    with pytest.raises(ValueError, match="context_overlap \\(16\\) must be smaller than context_length \\(16\\)"):
        free_noise(_noise(20), 16, 16, seed=0)


@pytest.mark.parametrize("kind", FREEINIT_FILTERS)
def test_every_filter_passes_the_centre_and_stops_the_corners(kind):
    mask = freeinit_low_pass(8, 16, 16, kind, 0.25, 0.25)
    assert mask.shape == (8, 1, 16, 16) and mask[4, 0, 8, 8] == 1.0 and mask[0, 0, 0, 0] < 0.01
    assert torch.equal(freeinit_low_pass(8, 16, 16, kind, 0.0, 0.25), torch.zeros(8, 1, 16, 16))


def test_filter_values_follow_their_formulas():
    # frame 6 of 8, row 10 of 16, column 4 of 16: d² = (2·6/8 - 1)²·(0.25/0.5)² + (2·10/16 - 1)² + (2·4/16 - 1)²
    d2 = (0.5 * 0.5) ** 2 + 0.25 ** 2 + 0.5 ** 2
    value = {kind: float(freeinit_low_pass(8, 16, 16, kind, 0.25, 0.5)[6, 0, 10, 4]) for kind in FREEINIT_FILTERS}
    assert value["gaussian"] == pytest.approx(math.exp(-d2 / (2 * 0.25 ** 2)), rel=1e-6)
    assert value["butterworth"] == pytest.approx(1 / (1 + (d2 / 0.25 ** 2) ** 4), rel=1e-6)
    assert value["ideal"] == (1.0 if d2 <= 0.5 else 0.0)
    box = freeinit_low_pass(8, 16, 16, "box", 0.25, 0.5)  # half-sizes round(8·0.25) = 2 and round(4·0.5) = 2
    assert box.sum() == 4 * 4 * 4 and box[2:6, 0, 6:10, 6:10].min() == 1.0


def test_restart_noise_is_the_diffused_latent_under_an_all_pass_and_fresh_noise_under_an_all_stop():
    generator = torch.Generator().manual_seed(1)
    sampled, first, fresh = (torch.randn(6, 4, 8, 8, generator=generator) for _ in range(3))
    alpha_bar = 1 / (1 + 14.6 ** 2)
    diffused = math.sqrt(alpha_bar) * sampled + math.sqrt(1 - alpha_bar) * first
    ones, zeros = torch.ones(6, 1, 8, 8), torch.zeros(6, 1, 8, 8)
    torch.testing.assert_close(freeinit_noise(sampled, first, fresh, 14.6, ones), diffused, rtol=0, atol=1e-5)
    torch.testing.assert_close(freeinit_noise(sampled, first, fresh, 14.6, zeros), fresh, rtol=0, atol=1e-5)


def test_bad_filter_is_refused():
    with pytest.raises(ValueError, match="filter must be one of gaussian, butterworth, ideal, box"):
        freeinit_low_pass(8, 8, 8, "sinc", 0.25, 0.25)

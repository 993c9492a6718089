"""video.color.match_color, checked with OpenCV's float HSV (an independent conversion from kornia's, which the
module uses): saturation and value means land on the reference's, the hue moves 0.03 of the way round the short
side, strength scales it, and strength 0 is the identity."""

import cv2
import numpy as np
import pytest
import torch

from animatelcm.video.color import match_color


def from_hsv(hue, sat, val, size=(24, 32), spread=0.04, seed=0) -> torch.Tensor:
    """An RGB image [H, W, 3] whose pixels scatter around the given hue (turns), saturation and value."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-spread, spread, (3, *size)).astype(np.float32)
    hsv = np.stack([((hue + noise[0]) % 1.0) * 360, sat + noise[1], val + noise[2]], -1).astype(np.float32)
    return torch.from_numpy(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def hsv_of(image: torch.Tensor) -> np.ndarray:
    """OpenCV float HSV of an RGB(A) image [H, W, C], hue in turns."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image[..., :3].double().numpy().astype(np.float32)), cv2.COLOR_RGB2HSV)
    hsv[..., 0] /= 360
    return hsv.astype(np.float64)


def means(image: torch.Tensor) -> tuple[float, float, float]:
    """(circular mean hue in turns, mean saturation, mean value)."""
    hsv = hsv_of(image)
    angle = hsv[..., 0] * 2 * np.pi
    hue = np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) / (2 * np.pi)
    return hue % 1.0, hsv[..., 1].mean(), hsv[..., 2].mean()


def arc(a: float, b: float) -> float:
    """The signed hue difference b - a the short way round, in turns."""
    return (b - a + 0.5) % 1.0 - 0.5


@pytest.fixture
def clip() -> torch.Tensor:
    """Three frames that drifted differently (paler, darker, greener) from the reference below."""
    return torch.stack([from_hsv(0.08, 0.35, 0.55, seed=1), from_hsv(0.12, 0.50, 0.40, seed=2),
                        from_hsv(0.25, 0.45, 0.50, seed=3)])


@pytest.fixture
def reference() -> torch.Tensor:
    return from_hsv(0.05, 0.60, 0.65, size=(40, 20), seed=4)  # another size than the frames


def test_each_frame_gets_the_references_saturation_and_value_and_3_percent_of_its_hue(clip, reference):
    out = match_color(clip, reference, 1.0)
    assert out.shape == clip.shape and out.dtype == clip.dtype
    ref_hue, ref_sat, ref_val = means(reference)
    for before, after in zip(clip, out):
        hue, _, _ = means(before)
        new_hue, new_sat, new_val = means(after)
        assert new_sat == pytest.approx(ref_sat, abs=1e-4) and new_val == pytest.approx(ref_val, abs=1e-4)
        assert arc(hue, new_hue) == pytest.approx(0.03 * arc(hue, ref_hue), abs=1e-5)


def test_pixels_match_the_shift_computed_with_opencv(clip, reference):
    """Every pixel: OpenCV HSV, shifted by the stated amounts, back to RGB with OpenCV."""
    out = match_color(clip, reference, 0.7)
    ref_hue, ref_sat, ref_val = means(reference)
    for before, after in zip(clip, out):
        hue, sat, val = means(before)
        hsv = hsv_of(before)
        hsv[..., 0] = (hsv[..., 0] + 0.7 * 0.03 * arc(hue, ref_hue)) % 1.0 * 360
        hsv[..., 1] = np.clip(hsv[..., 1] + 0.7 * (ref_sat - sat), 0, 1)
        hsv[..., 2] = np.clip(hsv[..., 2] + 0.7 * (ref_val - val), 0, 1)
        expected = cv2.cvtColor(hsv.astype(np.float32), cv2.COLOR_HSV2RGB)
        np.testing.assert_allclose(after.numpy(), expected, rtol=0, atol=2e-5)


def test_strength_zero_returns_the_frames_exactly(clip, reference):
    assert torch.equal(match_color(clip, reference, 0.0), clip)


def test_strength_half_moves_half_as_far(clip, reference):
    full, half = match_color(clip, reference, 1.0), match_color(clip, reference, 0.5)
    for before, f, h in zip(clip, full, half):
        hue, sat, val = means(before)
        full_hue, full_sat, full_val = means(f)
        half_hue, half_sat, half_val = means(h)
        assert half_sat - sat == pytest.approx(0.5 * (full_sat - sat), abs=1e-4)
        assert half_val - val == pytest.approx(0.5 * (full_val - val), abs=1e-4)
        assert arc(hue, half_hue) == pytest.approx(0.5 * arc(hue, full_hue), abs=1e-5)


def test_hue_difference_is_taken_the_short_way_round_the_wheel():
    """A frame at hue 0.02 and a reference at 0.98 are both red, 0.04 apart: the frame moves 0.0012 back across 0,
    not 0.0288 forward towards orange (what arithmetic means, 0.96 apart, would give)."""
    frame = from_hsv(0.02, 0.5, 0.5, spread=0.005, seed=5)[None]
    reference = from_hsv(0.98, 0.5, 0.5, spread=0.005, seed=6)
    hue, _, _ = means(frame[0])
    ref_hue, _, _ = means(reference)
    assert arc(hue, ref_hue) == pytest.approx(-0.04, abs=0.003)
    new_hue, _, _ = means(match_color(frame, reference, 1.0)[0])
    assert arc(hue, new_hue) == pytest.approx(0.03 * arc(hue, ref_hue), abs=1e-5)


def test_shifted_hues_wrap_past_1_to_0():
    """Pixels at hue 0.995 pushed forward by 0.012 come out at 0.007 (still red), not clamped at 1 nor wrapped
    the wrong way."""
    frame = from_hsv(0.995, 0.5, 0.5, spread=0.0, size=(4, 4))[None]
    reference = from_hsv(0.395, 0.5, 0.5, spread=0.0, size=(4, 4))  # 0.4 turns ahead: shift 0.03 * 0.4 = 0.012
    out = match_color(frame, reference, 1.0)
    np.testing.assert_allclose(hsv_of(out[0])[..., 0], 0.007, atol=1e-4)


def test_alpha_passes_through_untouched(clip, reference):
    alpha = torch.rand(*clip.shape[:3], 1, generator=torch.Generator().manual_seed(7))
    rgba = torch.cat([clip, alpha], -1)
    out = match_color(rgba, torch.cat([reference, torch.ones(*reference.shape[:2], 1)], -1), 1.0)
    assert out.shape == rgba.shape and torch.equal(out[..., 3:], alpha)
    torch.testing.assert_close(out[..., :3], match_color(clip, reference, 1.0), rtol=0, atol=0)


def test_first_image_of_a_reference_batch_is_used_whatever_its_size(clip, reference):
    other = from_hsv(0.6, 0.2, 0.3, size=(40, 20), seed=8)
    assert torch.equal(match_color(clip, torch.stack([reference, other]), 1.0), match_color(clip, reference, 1.0))
    small = torch.nn.functional.interpolate(reference.movedim(-1, 0)[None], size=(20, 10), mode="area")
    assert means(small[0].movedim(0, -1)) == pytest.approx(means(reference), abs=1e-3)  # same means, quarter size
    torch.testing.assert_close(match_color(clip, small[0].movedim(0, -1), 1.0), match_color(clip, reference, 1.0),
                               rtol=0, atol=2e-3)


def test_chunks_give_the_same_result_as_one_pass(clip, reference):
    assert torch.equal(match_color(clip, reference, 1.0, chunk_size=1), match_color(clip, reference, 1.0))


def test_half_precision_frames_stay_half_precision(clip, reference):
    out = match_color(clip.half(), reference, 1.0)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), match_color(clip, reference, 1.0), rtol=0, atol=2e-3)


@pytest.mark.parametrize("frames,reference,strength,message", [
    (torch.zeros(0, 8, 8, 3), torch.zeros(8, 8, 3), 1.0, "empty batch"),
    (torch.zeros(2, 8, 8, 1), torch.zeros(8, 8, 3), 1.0, r"\[frames, height, width, 3 or 4 channels\]"),
    (torch.zeros(2, 8, 8, 3), torch.zeros(0, 8, 8, 3), 1.0, "reference is an empty batch"),
    (torch.zeros(2, 8, 8, 3), torch.zeros(8, 8, 3), 1.5, "between 0 and 1"),
])
def test_bad_inputs_are_refused_with_the_cause(frames, reference, strength, message):
    with pytest.raises(ValueError, match=message):
        match_color(frames, reference, strength)

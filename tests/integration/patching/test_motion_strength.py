"""Motion strength over frames, pixels and steps: each UNet call's factors, read by instrumenting real sampling
(with and without context windows), and the checks made before sampling."""

import pytest
import torch

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.nodes.context import ContextOptions
from animatelcm.nodes.motion_model import ApplyMotionModel
from animatelcm.nodes.multival import ValueSchedule
from animatelcm.nodes.sampling import KSampler
from animatelcm.patching import motion_injection
from animatelcm.patching.motion_injection import load_motion_model_file
from animatelcm.patching.motion_strength import combined, frame_factor, motion_strength

FRAMES = 20


@pytest.fixture(scope="module")
def parts():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    return tiny_sd15_model(tracks_input=True), load_motion_model_file(str(path), path.name)


def apply(parts, motion_scale=1.0, **optional):
    return ApplyMotionModel.execute(parts[0], parts[1], motion_scale, "auto", **optional).args[0]


def sample(model, frames=FRAMES, windows=None, steps=4):
    if windows:
        model = ContextOptions.execute(model, windows, 2, 1, "uniform", "pyramid").args[0]
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    positive = [[torch.randn(1, 77, 768, generator=torch.manual_seed(0)), {}]]
    return KSampler.execute(model, positive, [[torch.zeros(1, 77, 768), {}]], latent, 5, steps, 1.0, 1.0
                            ).args[0]["samples"]


@pytest.fixture
def calls(monkeypatch):
    """(window frames, sigma, effect, key scale) of every motion module call that ran."""
    seen = []

    def recording(value, options, chunks, per_chunk, height, width, device):
        factor = frame_factor(value, options, chunks, per_chunk, height, width, device)
        params = options.get("ad_params")
        frames = list(params["sub_idxs"]) if params and params.get("sub_idxs") is not None else list(range(per_chunk))
        seen.append((frames, float(options["sigmas"].max()), factor, (height, width)))
        return factor

    monkeypatch.setattr(motion_injection, "frame_factor", recording)
    return seen


def test_each_context_window_gets_its_own_frames_values(parts, calls):
    """A rising per-frame effect over 20 frames in windows of 8: every module call of every window must be handed
    exactly the values of that window's frames (both lists and masks), for each cond chunk."""
    schedule = ValueSchedule.execute("0: 0.0\n19: 1.9", 0, "linear").args[0]
    assert schedule[:, 0, 0].tolist() == pytest.approx([0.1 * i for i in range(FRAMES)])
    sample(apply(parts, 1.0, effect_multival=schedule), windows=8)
    effects = calls[0::2]  # effect, then key scale, per module call
    windows = {tuple(frames) for frames, *_ in effects}
    assert len(windows) >= 3 and all(len(w) == 8 for w in windows)
    assert set().union(*windows) == set(range(FRAMES))
    for frames, _, factor, _ in effects:
        assert factor.shape[0] == len(frames) and factor.shape[1:] == (1, 1, 1)
        assert factor.flatten().tolist() == pytest.approx([0.1 * i for i in frames])
    assert all(factor == 1.0 for _, _, factor, _ in calls[1::2])  # no scale_multival: the keys are untouched


def test_a_mask_is_cut_to_the_window_and_resized_to_each_level(parts, calls):
    mask = torch.zeros(FRAMES, 16, 16)
    mask[:, :, :8] = 1.0  # motion on the left half only
    mask[10:] *= 2.0
    sample(apply(parts, 0.5, effect_multival=ValueSchedule.execute("0: 1.0", 0, "linear", mask).args[0]), windows=8)
    levels = set()
    for frames, _, factor, (height, width) in calls[0::2]:
        levels.add(height)
        assert factor.shape == (len(frames), 1, height, width)
        expected = torch.tensor([1.0 if i < 10 else 2.0 for i in frames]).view(-1, 1, 1) * 0.5
        if width == 1:  # the 1x1 level: the mask's middle, half in the moving half
            torch.testing.assert_close(factor[:, 0], expected * 0.5)
            continue
        torch.testing.assert_close(factor[:, 0, :, : width // 2], expected.expand(-1, height, width // 2))
        assert factor[:, 0, :, width // 2:].abs().max() == 0
    assert len(levels) >= 3  # every UNet level got the mask at its own size


def test_a_constant_list_samples_as_the_same_constant_and_zero_as_no_motion(parts):
    flat = ValueSchedule.execute("0: 0.3", FRAMES, "linear").args[0]
    constant = sample(apply(parts, 0.3), windows=8)
    torch.testing.assert_close(sample(apply(parts, 1.0, effect_multival=flat), windows=8), constant,
                               rtol=0, atol=1e-5)
    zero = ValueSchedule.execute("0: 0.0", 0, "linear").args[0]
    torch.testing.assert_close(sample(apply(parts, 1.0, effect_multival=zero)), sample(apply(parts, 0.0)),
                               rtol=0, atol=1e-6)
    assert (sample(apply(parts, 0.3)) - sample(apply(parts, 0.0))).abs().max() > 1e-3


def test_scale_multival_reaches_the_attention_keys_per_window(parts, calls):
    keys = ValueSchedule.execute("0: 0.5\n-1: 2.0", FRAMES, "linear").args[0]
    plain = sample(apply(parts), windows=8)
    calls.clear()
    scaled = sample(apply(parts, scale_multival=keys), windows=8)
    assert (scaled - plain).abs().max() > 1e-4
    assert calls and all(factor == 1.0 for _, _, factor, _ in calls[0::2])
    for frames, _, factor, _ in calls[1::2]:
        torch.testing.assert_close(factor.flatten(), keys[frames, 0, 0])


def test_motion_runs_only_within_start_and_end_percent(parts, calls):
    model = apply(parts, 1.0, start_percent=0.3, end_percent=0.8)
    sample(model, frames=8, steps=4)
    sampling = model.get_model_object("model_sampling")
    high, low = float(sampling.percent_to_sigma(0.3)), float(sampling.percent_to_sigma(0.8))
    ran = {round(sigma, 4) for _, sigma, _, _ in calls}
    calls.clear()
    sample(apply(parts), frames=8, steps=4)
    every_step = {round(sigma, 4) for _, sigma, _, _ in calls}
    assert ran == {s for s in every_step if low <= s <= high} and 0 < len(ran) < len(every_step) == 4
    # An empty range samples every frame on its own, as motion_scale 0; the whole range as no range at all.
    torch.testing.assert_close(sample(apply(parts, 1.0, start_percent=1.0), frames=8),
                               sample(apply(parts, 0.0), frames=8), rtol=0, atol=0)
    torch.testing.assert_close(sample(apply(parts, 1.0, start_percent=0.0, end_percent=1.0), frames=8),
                               sample(apply(parts), frames=8), rtol=0, atol=0)


def test_bad_values_are_refused_before_sampling(parts):
    with pytest.raises(ValueError, match="start_percent \\(0.9\\) is after end_percent \\(0.2\\).*swap them"):
        apply(parts, 1.0, start_percent=0.9, end_percent=0.2)
    assert "swap them" in ApplyMotionModel.validate_inputs(1.0, 0.9, 0.2)
    with pytest.raises(ValueError, match="effect_multival: expected a number, a per-frame list or a mask"):
        apply(parts, 1.0, effect_multival=torch.ones(2, 3, 4, 5))
    with pytest.raises(ValueError, match="scale_multival: a value is not a finite number"):
        apply(parts, 1.0, scale_multival=torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="effect_multival: expected .*got str"):
        motion_strength(1.0, "0: 1.0")


def test_multivals_combine_frame_by_frame_repeating_the_last_frame():
    per_frame = torch.tensor([1.0, 2.0])[:, None, None]
    mask = torch.ones(3, 4, 4)
    mask[:, :, 2:] = 0
    out = combined(per_frame, mask)
    assert out.shape == (3, 4, 4)
    assert out[:, 0, 0].tolist() == [1.0, 2.0, 2.0] and out[:, :, 2:].abs().max() == 0
    assert combined(0.5, per_frame)[:, 0, 0].tolist() == [0.5, 1.0]
    small = torch.ones(1, 2, 2)
    assert combined(small, mask).shape == (3, 4, 4)


def test_the_value_schedule_is_checked_at_validation_quoting_the_line():
    assert "got '0: fast'" in ValueSchedule.validate_inputs("0: fast", 0)
    assert "set frame_count" in ValueSchedule.validate_inputs("0: 1\n-1: 2", 0)
    assert ValueSchedule.validate_inputs("0: 1\n-1: 2", 16) is True
    assert ValueSchedule.validate_inputs(None, 0) is True  # linked: checked when it runs
    rising = ValueSchedule.execute("0: 1\n-1: 2", 5, "linear").args[0]
    assert rising.shape == (5, 1, 1) and rising.flatten().tolist() == pytest.approx([1.0, 1.25, 1.5, 1.75, 2.0])

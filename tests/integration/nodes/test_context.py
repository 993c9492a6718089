"""Context windows: core's schedules fused per frame, per-frame conditioning cut to each window, the frame limits."""

import pytest
import torch

from animatelcm.nodes.context import ContextOptions
from animatelcm.patching.context_handler import VideoContextHandler
from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.nodes.sampling import KSampler
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model

from animatelcm.samplers.context_windows import FUSE_METHODS, SCHEDULES


@pytest.fixture(scope="module")
def animated():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    return attach_motion_model(tiny_sd15_model(tracks_input=True), load_motion_model_file(str(path), path.name), 0.2,
                               "auto")


def sample(model, frames, positive, negative=None, cfg=1.0, seed=3):
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    negative = negative if negative is not None else [[torch.zeros(1, 77, 768), {}]]
    return KSampler.execute(model, positive, negative, latent, seed, 2, cfg, 1.0).args[0]["samples"]


def with_windows(model, length=16, overlap=4, stride=1, schedule="uniform", fuse="pyramid"):
    return ContextOptions.execute(model, length, overlap, stride, schedule, fuse).args[0]


def prompt(seed=0):
    return [[torch.randn(1, 77, 768, generator=torch.manual_seed(seed)), {}]]


def test_windows_as_long_as_the_clip_change_nothing(animated):
    plain = sample(animated, 12, prompt())
    windowed = sample(with_windows(animated, length=16), 12, prompt())
    assert (windowed - plain).abs().max() <= 1e-5


def fused(handler, frames, step, per_window):
    """Core's window loop (handler.execute) with `per_window(sub_x)` standing in for the model."""
    x = torch.arange(frames, dtype=torch.float32).reshape(frames, 1, 1, 1).expand(frames, 4, 2, 2).contiguous()
    sigmas = torch.tensor([14.6, 7.0, 3.0, 1.0, 0.0])
    options = {"transformer_options": {"sample_sigmas": sigmas}}
    windows_seen = []

    def calc(model, conds, sub_x, timestep, model_options):
        windows_seen.append(list(model_options["transformer_options"]["context_window"].index_list))
        return [per_window(sub_x) for _ in conds]

    [out] = handler.execute(calc, None, [[{}]], x, sigmas[step:step + 1], options)
    return x, out, windows_seen


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("fuse", FUSE_METHODS)
@pytest.mark.parametrize("frames", [17, 40])
def test_every_frame_is_covered_and_fuse_weights_sum_to_one(schedule, fuse, frames):
    for step in range(4):  # uniform schedules move their windows every step
        handler = VideoContextHandler(16, 4, 2 if "uniform" in schedule else 1, schedule, fuse)
        x, identity, seen = fused(handler, frames, step, lambda sub_x: sub_x.clone())
        assert sorted({i for window in seen for i in window}) == list(range(frames)), (schedule, step, seen)
        assert all(len(window) <= 16 for window in seen)
        # Each window returns the frames it was given: fused with weights summing to 1, every frame comes back.
        torch.testing.assert_close(identity, x, rtol=0, atol=1e-5)
        _, ones, _ = fused(handler, frames, step, lambda sub_x: torch.ones_like(sub_x))
        torch.testing.assert_close(ones, torch.ones_like(ones), rtol=0, atol=1e-6)


def wraps(window, frames):
    return any(b < a for a, b in zip(window, window[1:])) and (frames - 1) in window and 0 in window


def test_looped_windows_wrap_around_the_end_and_uniform_ones_never_do():
    looped_wrap = uniform_wrap = False
    for step in range(4):
        _, _, looped = fused(VideoContextHandler(16, 4, 1, "looped uniform", "pyramid"), 40, step, torch.clone)
        _, _, uniform = fused(VideoContextHandler(16, 4, 1, "uniform", "pyramid"), 40, step, torch.clone)
        looped_wrap |= any(wraps(w, 40) for w in looped)
        uniform_wrap |= any(wraps(w, 40) for w in uniform)
    assert looped_wrap and not uniform_wrap


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_per_frame_conditioning_is_cut_to_each_window_for_cond_and_uncond(animated, schedule):
    """Frame k's positive embedding is filled with k and its negative with 1000 + k: every UNet call must see, in each
    cond/uncond chunk, exactly the embeddings of the frames of its window."""
    frames = 40
    seen = []

    def record(apply_model, args):
        options = args["c"]["transformer_options"]
        window = options["context_window"].index_list
        context = args["c"]["c_crossattn"][:, 0, 0]
        for chunk, kind in enumerate(args["cond_or_uncond"]):
            got = context[chunk * len(window):(chunk + 1) * len(window)].tolist()
            seen.append((kind, window, got))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = with_windows(animated, schedule=schedule).clone()
    model.set_model_unet_function_wrapper(record)
    per_frame = torch.arange(frames, dtype=torch.float32).reshape(frames, 1, 1).expand(frames, 77, 768)
    sample(model, frames, [[per_frame.clone(), {}]], [[per_frame + 1000, {}]], cfg=1.5)
    assert seen and {kind for kind, _, _ in seen} == {0, 1}
    for kind, window, got in seen:
        assert got == [float(i + 1000 * kind) for i in window], (schedule, kind, window, got)


def test_a_clip_longer_than_the_motion_model_needs_windows_no_longer_than_it():
    path = mm.motion_module_file("animatediff_v1", mm.TINY_WIDTH, dtype=torch.float32)  # position encoding: 24
    model = attach_motion_model(tiny_sd15_model(), load_motion_model_file(str(path), path.name), 1.0, "auto")
    with pytest.raises(ValueError, match="30 frames exceed the 24 frames.*add context windows"):
        sample(model, 30, prompt())
    with pytest.raises(ValueError, match="context_length 32 exceeds the 24 frames"):
        sample(with_windows(model, length=32), 40, prompt())
    assert sample(with_windows(model, length=16), 30, prompt()).shape[0] == 30


def test_overlap_must_be_shorter_than_the_window():
    assert "must be smaller than context_length" in ContextOptions.validate_inputs(16, 16)
    assert ContextOptions.validate_inputs(16, 4) is True


def test_the_input_model_is_not_changed(animated):
    before = dict(animated.model_options)
    with_windows(animated)
    assert "context_handler" not in animated.model_options and animated.model_options == before
    assert isinstance(with_windows(animated).model_options["context_handler"], VideoContextHandler)

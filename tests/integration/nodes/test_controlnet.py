"""ALCM_ApplyVideoControlNet: each frame gets its own hint, under cond/uncond batching and every context window schedule.

Instrumented runs give frame k a hint filled with k / 100 and a prompt embedding filled with k (its negative 1000 + k):
the ControlNet's inputs then say, for every batch entry of every call, which frame's hint and which frame's prompt it
was given, and the two must agree.
"""

import copy
from types import SimpleNamespace

import pytest
import torch

import comfy.sampler_helpers
import comfy.samplers
import nodes as comfy_nodes  # ComfyUI's core nodes

from animatelcm.patching.compat import context_window
from animatelcm.nodes.context import ContextOptions
from animatelcm.nodes.controlnet import ApplyVideoControlNet
from animatelcm.patching.video_control import VideoControl, hint_frames
from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.nodes.sampling import KSampler
from animatelcm.samplers.context_windows import SCHEDULES
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.devkit.controlnet import tiny_controlnet


@pytest.fixture(scope="module")
def animated():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    return attach_motion_model(tiny_sd15_model(tracks_input=True), load_motion_model_file(str(path), path.name), 0.2,
                               "auto")


@pytest.fixture(scope="module")
def control_net():
    return tiny_controlnet()


def sample(model, frames, positive, negative, cfg=1.5, steps=2):
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    return KSampler.execute(model, positive, negative, latent, 3, steps, cfg, 1.0).args[0]["samples"]


def per_frame_prompts(frames):
    emb = torch.arange(frames, dtype=torch.float32).reshape(frames, 1, 1).expand(frames, 77, 768)
    return [[emb.clone(), {}]], [[emb + 1000, {}]]


def numbered_hints(count, size=64):
    """IMAGE [count, H, W, 3], hint k filled with k / 100 (nearest-exact resizing keeps a constant image constant)."""
    return (torch.arange(count, dtype=torch.float32) / 100).reshape(count, 1, 1, 1).expand(count, size, size, 3)


def apply(positive, negative, control_net, images, strength=1.0, start=0.0, end=1.0, spread=False, mask=None):
    return ApplyVideoControlNet.execute(positive, negative, control_net, images, strength, start, end, spread,
                                        None, mask).args


@pytest.fixture
def control_calls(control_net):
    """Per ControlNet call: (hint frame per batch entry, prompt value per batch entry)."""
    calls = []

    def record(module, args, kwargs):
        calls.append(((kwargs["hint"][:, 0, 0, 0] * 100).round().int().tolist(),
                      kwargs["context"][:, 0, 0].round().int().tolist()))

    hook = control_net.control_model.register_forward_pre_hook(record, with_kwargs=True)
    yield calls
    hook.remove()


def with_windows(model, schedule, length=16, overlap=4):
    return ContextOptions.execute(model, length, overlap, 2 if "uniform" in schedule else 1, schedule,
                                  "pyramid").args[0]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_window_gives_the_controlnet_its_own_frames_hints_for_cond_and_uncond(animated, control_net,
                                                                                   control_calls, schedule):
    frames = 40
    windows = []

    def record_window(apply_model, args):
        windows.append((list(args["c"]["transformer_options"]["context_window"].index_list), args["cond_or_uncond"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = with_windows(animated, schedule).clone()
    model.set_model_unet_function_wrapper(record_window)
    positive, negative = apply(*per_frame_prompts(frames), control_net, numbered_hints(frames))
    sample(model, frames, positive, negative)

    assert len(control_calls) == len(windows) > 2
    kinds = set()
    for (hints, prompts), (window, cond_or_uncond) in zip(control_calls, windows):
        # cond and uncond share the control, so they run as one batch: one chunk per entry of cond_or_uncond.
        assert hints == window * len(cond_or_uncond), (schedule, window, hints)
        assert prompts == [frame + 1000 * kind for kind in cond_or_uncond for frame in window]
        kinds.update(cond_or_uncond)
    assert kinds == {0, 1}
    assert sorted({f for window, _ in windows for f in window}) == list(range(frames))
    if schedule == "looped uniform":
        assert any(window[0] > window[-1] for window, _ in windows)  # a window across the end into the start


@pytest.mark.parametrize("spread, expected", [(False, [0, 1, 2, 2, 2, 2, 2, 2]), (True, [0, 0, 0, 1, 1, 1, 2, 2])])
def test_fewer_hints_than_frames_hold_the_last_or_spread(animated, control_net, control_calls, spread, expected):
    positive, negative = apply(*per_frame_prompts(8), control_net, numbered_hints(3), spread=spread)
    sample(animated, 8, positive, negative, steps=1)
    [(hints, prompts)] = control_calls
    assert sorted(prompts) == list(range(8)) + list(range(1000, 1008))  # cond and uncond, in either order
    assert hints == [expected[p % 1000] for p in prompts]


def test_hint_frames():
    assert hint_frames(1, 4, False) == hint_frames(1, 4, True) == [0, 0, 0, 0]
    assert hint_frames(6, 3, False) == [0, 1, 2]  # more hints than frames: the first ones
    assert hint_frames(6, 3, True) == [0, 2, 4]  # or spread: every other one


def test_with_one_hint_per_frame_it_equals_core_controlnet_apply(animated, control_net):
    """Without windows core lines the hints up right; the wrapper must not change the control's math."""
    gen = torch.manual_seed(5)
    positive = [[torch.randn(1, 77, 768, generator=gen), {}]]
    negative = [[torch.randn(1, 77, 768, generator=gen), {}]]
    hints = torch.rand(6, 64, 64, 3, generator=gen)
    ours = sample(animated, 6, *apply(positive, negative, control_net, hints, 0.8, 0.0, 1.0))
    core = sample(animated, 6, *comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(
        positive, negative, control_net, hints, 0.8, 0.0, 1.0))
    plain = sample(animated, 6, positive, negative)
    assert (ours - plain).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # every frame is steered
    torch.testing.assert_close(ours, core, rtol=0, atol=1e-6)


def test_mask_start_end_and_strength_zero(animated, control_net):
    gen = torch.manual_seed(6)
    positive = [[torch.randn(1, 77, 768, generator=gen), {}]]
    negative = [[torch.randn(1, 77, 768, generator=gen), {}]]
    hints = torch.rand(4, 64, 64, 3, generator=gen)
    plain = sample(animated, 4, positive, negative)
    full = sample(animated, 4, *apply(positive, negative, control_net, hints))
    assert torch.equal(sample(animated, 4, *apply(positive, negative, control_net, hints,
                                                  mask=torch.ones(64, 64))), full)
    assert torch.equal(sample(animated, 4, *apply(positive, negative, control_net, hints,
                                                  mask=torch.zeros(1, 64, 64))), plain)
    # One mask per batch entry, resized to each residual (frames mix through the motion module, so a per-frame mask
    # is checked on the residuals themselves).
    left = torch.zeros(64, 64)
    left[:, :32] = 1.0
    mask = torch.stack([torch.ones(64, 64), torch.zeros(64, 64), left])
    residuals = VideoControl._masked({"input": [torch.ones(3, 2, 8, 8)], "middle": [None]}, mask)
    assert residuals["input"][0].mean(dim=(1, 2, 3)).tolist() == [1.0, 0.0, 0.5]
    assert residuals["middle"] == [None]
    # The range as core applies it: end 1.0 is sigma 0, so start = end = 1.0 never applies.
    assert torch.equal(sample(animated, 4, *apply(positive, negative, control_net, hints, start=1.0, end=1.0)),
                       plain)
    assert apply(positive, negative, control_net, hints, strength=0.0) == (positive, negative)
    assert "swap them" in ApplyVideoControlNet.validate_inputs(0.6, 0.2)
    assert ApplyVideoControlNet.validate_inputs(0.0, 1.0) is True


def test_chained_controls_add_and_the_inputs_are_not_changed(animated, control_net):
    gen = torch.manual_seed(7)
    positive = [[torch.randn(1, 77, 768, generator=gen), {}]]
    negative = [[torch.randn(1, 77, 768, generator=gen), {}]]
    hints = torch.rand(4, 64, 64, 3, generator=gen)
    before = [[t[0].clone(), dict(t[1])] for t in positive]
    first = apply(positive, negative, control_net, hints)
    assert positive[0][1] == before[0][1] and torch.equal(positive[0][0], before[0][0])
    assert first[0][0][1]["control"] is first[1][0][1]["control"]  # shared: cond and uncond still batch

    alone = sample(animated, 4, *first)
    # A second, masked-out control chained on top leaves the first one's result; core's node chained after ours too.
    assert torch.equal(sample(animated, 4, *apply(*first, control_net, hints.flip(0), mask=torch.zeros(64, 64))),
                       alone)
    chained = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(*first, control_net, hints.flip(0), 1.0, 0.0,
                                                                     1.0)
    assert chained[0][0][1]["control"].previous_controlnet is first[0][0][1]["control"]
    both = sample(animated, 4, *chained)
    assert (both - alone).abs().max() > 1e-4


def test_a_window_that_does_not_say_where_it_is_in_the_clip_is_refused(control_net):
    control = VideoControl(control_net, torch.zeros(4, 3, 8, 8), 1.0, (0.0, 1.0))
    window = context_window([2, 3], 4)  # core's window object, as core's own handler sets it: no ad_params
    with pytest.raises(ValueError, match="use ALCM_ContextOptions"):
        control.frames_of_call(2, 1, {"context_window": window})
    ad_params = {"full_length": 4, "context_length": 2, "sub_idxs": [2, 3]}
    assert control.frames_of_call(4, 2, {"context_window": window, "ad_params": ad_params}) == ([2, 3], 4)
    assert control.frames_of_call(6, 2, {}) == ([0, 1, 2], 3)
    whole = {"full_length": 3, "context_length": None, "sub_idxs": None}  # AnimateDiff-Evolved without windows
    assert control.frames_of_call(6, 2, {"ad_params": whole}) == ([0, 1, 2], 3)


def test_core_controlnet_with_many_hints_under_windows_is_warned_about(control_net, caplog):
    from animatelcm.patching.context_handler import VideoContextHandler

    core = control_net.copy().set_cond_hint(torch.zeros(20, 3, 8, 8))
    ours = VideoControl(control_net, torch.zeros(20, 3, 8, 8), 1.0, (0.0, 1.0))
    handler = VideoContextHandler(16, 4, 1, "static", "pyramid")
    x = torch.zeros(20, 4, 1, 1)
    sigmas = torch.tensor([14.6, 3.0, 1.0, 0.0])
    options = {"transformer_options": {"sample_sigmas": sigmas}}

    def calc(model, conds, sub_x, timestep, model_options):
        return [sub_x for _ in conds]

    chained = ours.copy().set_previous_controlnet(core)
    for control, step, warned in ((ours, 0, 0), (chained, 0, 1), (chained, 1, 0), (chained, 2, 0), (chained, 0, 1)):
        caplog.clear()
        handler.execute(calc, None, [[{"control": control}]], x, sigmas[step].expand(20), options)
        assert caplog.text.count("every window uses the first ones. Use ALCM_ApplyVideoControlNet") == warned

    # Another pack's control class (Advanced-ControlNet's converts core's) reads ad_params: no warning.
    advanced = copy.copy(core)
    advanced.__class__ = type("ControlNetAdvanced", (type(core),), {"__module__": "another_pack.control"})
    caplog.clear()
    handler.execute(calc, None, [[{"control": advanced}]], x, sigmas[0].expand(20), options)
    assert "every window uses the first ones" not in caplog.text


def test_a_multi_gpu_run_gets_a_video_control_per_device_that_gives_the_same_hints(animated, control_net):
    """ComfyUI 0.23.0+ reads `multigpu_clones` on every control before sampling and, for a multi-GPU run, has each
    control of a chain deep-cloned per extra device and the clones linked per device (preprocess_multigpu_conds).
    Here the extra device is the CPU again, so the clone can run and be compared with the original."""
    if not hasattr(comfy.sampler_helpers, "preprocess_multigpu_conds"):
        pytest.skip("this ComfyUI has no multi-GPU sampling (added in 0.23.0)")
    frames, device = 4, torch.device("cpu")
    core = control_net.copy().set_cond_hint(numbered_hints(1).movedim(-1, 1), 0.5)
    positive, negative = per_frame_prompts(frames)
    positive = [[positive[0][0], {"control": core}]]
    positive, negative = apply(positive, negative, control_net, numbered_hints(frames))
    control = positive[0][1]["control"]
    model = animated.clone()
    model.set_additional_models("multigpu", [SimpleNamespace(load_device=device)])  # what core's clone would carry

    comfy.sampler_helpers.preprocess_multigpu_conds({"positive": [positive[0][1]]}, model, model.model_options)
    clone = control.get_instance_for_device(device)
    assert isinstance(clone, VideoControl) and clone is not control and control.multigpu_clones == {device: clone}
    assert torch.equal(clone.hints, control.hints) and clone.control is not control.control
    assert clone.control.control_model is not control.control.control_model  # its own copy of the weights
    assert clone.previous_controlnet is core.get_instance_for_device(device) is not core  # linked per device
    assert set(map(id, clone.control.get_models())) <= set(map(id, control.get_models()))

    comfy.samplers.pre_run_control(model.model, [{"control": control}])  # 0.23+ reads multigpu_clones here
    x = torch.randn(frames, 4, 8, 8, generator=torch.manual_seed(0))
    sigma = torch.full((frames,), 6.5)
    cond = {"c_crossattn": positive[0][0]}
    [original, cloned] = [c.get_control(x, sigma, cond, 1, {}) for c in (control, clone)]
    for key in ("input", "middle", "output"):
        for a, b in zip(original[key], cloned[key]):
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)
    control.cleanup()
    assert clone._sampling is None and clone._window == (None, None)

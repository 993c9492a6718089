"""The window contract other packs read (docs/reference.md, section 7): while the pack's context windows sample, every
UNet call carries `ad_params` naming exactly the frames it holds, for cond and uncond; no call outside windows does.

Frame k's positive embedding is filled with k and its negative with 1000 + k, so the conditioning a call receives says
which frames it holds. Two readers written here from the contract, an IP-Adapter-style attention patch and an
Advanced-ControlNet-style control, pick frames from their per-frame inputs the way those packs do, and must pick
exactly those frames.
"""

import pytest
import torch

import comfy.controlnet
from comfy.ldm.modules.attention import optimized_attention

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.nodes.context import ContextOptions
from animatelcm.nodes.sampling import KSampler
from animatelcm.patching.context_handler import VideoContextHandler
from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.samplers.context_windows import SCHEDULES

FRAMES = 40
PER_FRAME_INPUTS = 30  # fewer images than frames: the readers hold the last one, as both packs do


@pytest.fixture(scope="module")
def animated():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    return attach_motion_model(tiny_sd15_model(tracks_input=True), load_motion_model_file(str(path), path.name), 0.2,
                               "auto")


def frames_picked(options: dict, batch: int) -> list[int]:
    """Which per-frame input each batch entry gets, read as IPAdapter_plus and Advanced-ControlNet read it: inputs
    extended to full_length by repeating the last, indexed by sub_idxs, tiled over the cond/uncond chunks; without
    sub_idxs the first batch / chunks inputs."""
    chunks = len(options["cond_or_uncond"])
    params = options.get("ad_params")
    if params is not None and params["sub_idxs"] is not None:
        wanted = params["sub_idxs"]
    else:
        wanted = range(batch // chunks)
    return [min(i, PER_FRAME_INPUTS - 1) for i in wanted] * chunks


def frames_held(context: torch.Tensor) -> list[int]:
    return [min(int(v) % 1000, PER_FRAME_INPUTS - 1) for v in context[:, 0, 0].round().tolist()]


class FrameReadingControl(comfy.controlnet.ControlBase):
    """An Advanced-ControlNet-style control: picks its hints by `ad_params` and records what it picked."""

    def __init__(self, calls: list):
        super().__init__()
        self.calls = calls

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        self.calls.append((frames_picked(transformer_options, x_noisy.shape[0]), frames_held(cond["c_crossattn"]),
                           transformer_options.get("ad_params")))
        return None

    def copy(self):
        c = FrameReadingControl(self.calls)
        self.copy_to(c)
        return c


def run(model, frames, cfg=1.5):
    """Samples with both readers in place; returns (attention records, control records)."""
    attention_calls, control_calls = [], []
    held = []

    def record_held(apply_model, args):
        held.append(frames_held(args["c"]["c_crossattn"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    def ip_adapter_patch(q, k, v, extra_options):
        attention_calls.append((frames_picked(extra_options, q.shape[0]), held[-1], extra_options.get("ad_params")))
        return optimized_attention(q, k, v, extra_options["n_heads"])

    m = model.clone()
    m.set_model_unet_function_wrapper(record_held)
    m.set_model_attn2_replace(ip_adapter_patch, "middle", 0)
    control = FrameReadingControl(control_calls)
    emb = torch.arange(frames, dtype=torch.float32).reshape(frames, 1, 1).expand(frames, 77, 768)
    positive, negative = [[emb.clone(), {"control": control}]], [[emb + 1000, {"control": control}]]
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    KSampler.execute(m, positive, negative, latent, 3, 2, cfg, 1.0)
    return attention_calls, control_calls


def with_windows(model, schedule, length=16, overlap=4):
    return ContextOptions.execute(model, length, overlap, 2 if "uniform" in schedule else 1, schedule,
                                  "pyramid").args[0]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_window_tells_other_packs_its_frames(animated, schedule):
    attention_calls, control_calls = run(with_windows(animated, schedule), FRAMES)
    assert len(attention_calls) == len(control_calls) > 2
    windows = []
    for picked, held, params in attention_calls + control_calls:
        assert picked == held, (schedule, params, picked, held)
        assert params["full_length"] == FRAMES and params["context_length"] == len(params["sub_idxs"]) <= 16
        windows.append(params["sub_idxs"])
    assert sorted({f for window in windows for f in window}) == list(range(FRAMES))
    if schedule == "looped uniform":
        assert any(window[0] > window[-1] for window in windows)  # across the end into the start
    if schedule == "uniform":
        assert any(window[1] - window[0] == 2 for window in windows)  # a strided window


def test_the_readers_would_see_the_clips_first_frames_without_the_contract(animated):
    """The negative control: the same readers, told nothing, give a later window the clip's first inputs."""
    calls = []
    for picked, held, params in run(with_windows(animated, "static"), FRAMES)[0]:
        calls.append((frames_picked({"cond_or_uncond": [0] * (len(picked) // params["context_length"])},
                                    len(picked)), held))
    assert any(blind != held for blind, held in calls)


@pytest.mark.parametrize("windowed", [False, True])
def test_no_call_outside_windowed_sampling_carries_it(animated, windowed):
    model = with_windows(animated, "uniform") if windowed else animated  # 12 frames fit one 16-frame window
    attention_calls, control_calls = run(model, 12)
    assert attention_calls and control_calls
    assert all(params is None for _, _, params in attention_calls + control_calls)
    assert all(picked == held for picked, held, _ in attention_calls + control_calls)


def test_it_is_removed_after_sampling(animated):
    model = with_windows(animated, "uniform")
    run(model, FRAMES)
    assert "ad_params" not in model.model_options["transformer_options"]


def test_while_animatediff_evolved_samples_its_own_ad_params_are_left_alone():
    handler = VideoContextHandler(16, 4, 1, "static", "pyramid")
    theirs = {"full_length": 40, "context_length": None, "sub_idxs": None}
    options = {"transformer_options": {"ADGS": object(), "ad_params": theirs}}
    seen = []

    def calc(model, conds, sub_x, timestep, model_options):
        seen.append(model_options["transformer_options"]["ad_params"])
        return [sub_x for _ in conds]

    handler.execute(calc, None, [[{}]], torch.zeros(40, 4, 2, 2), torch.tensor([1.0]), options)
    assert seen and all(params is theirs for params in seen)
    assert options["transformer_options"]["ad_params"] is theirs and theirs["sub_idxs"] is None

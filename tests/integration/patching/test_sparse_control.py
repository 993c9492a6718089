"""SparseCtrl: the forward against an independent reference, keyframes in every context window, and the refusals.

The reference shares nothing with patching/sparse_control.py or ComfyUI: diffusers' ControlNetModel holds the
ControlNet part under the file's own key names (the RGB model's condition embedding as one Conv2d), its blocks are
walked by hand with the float64 reference temporal transformer of tests/fixtures/reference_motion.py after each
ResBlock/attention pair of the down levels, on a zeroed noisy input (docs/reference.md, section 8).
"""

import pytest
import torch

import comfy.model_detection
import comfy.supported_models
import comfy.utils

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit import sparse_control as dsc
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.devkit.lora import lora_file
from animatelcm.devkit.sd15_checkpoint import unet_layout
from animatelcm.motion_models.checkpoint import MotionModelFormatError, load_motion_model
from animatelcm.nodes.context import ContextOptions
from animatelcm.nodes.sampling import KSampler
from animatelcm.nodes.sparse_control import ApplySparseCtrl
from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.patching.sparse_control import (SparseCtrlError, keyframe_condition, keyframe_frames,
                                                load_sparse_control, load_sparse_control_file, parse_frame_indices)
from animatelcm.samplers.context_windows import SCHEDULES
from animatelcm.tests.fixtures.reference_motion import reference_module

TINY = mm.TINY_WIDTH  # the width of devkit's tiny SD1.5 UNet
TOLERANCE = 1e-4


def tiny_unet_config() -> dict:
    """Core's detection knows SD1.5 at full width only: the narrow model's config, as devkit's tiny UNet has it."""
    layout = {k: torch.empty(shape, device="meta") for k, shape in unet_layout(TINY[0]).items()}
    return comfy.supported_models.SD15(comfy.model_detection.detect_unet_config(layout, "")).unet_config


def load(kind, width):
    path = dsc.sparse_control_file(kind, width, dtype=torch.float32)
    config = None if width == dsc.FULL_WIDTH else tiny_unet_config()
    return load_sparse_control(comfy.utils.load_torch_file(str(path), safe_load=True), path.name, config), path


def reference_forward(state_dict, kind, width, hint, timesteps, context, frames, motion=True):
    """SparseCtrl's forward from the architecture: diffusers blocks walked by hand, reference temporal layers."""
    from diffusers import ControlNetModel

    spatial = {k: v.float() for k, v in state_dict.items() if ".motion_modules." not in k}
    ref = ControlNetModel(block_out_channels=width, cross_attention_dim=768, attention_head_dim=8,
                          conditioning_channels=dsc.CONDITION_CHANNELS[kind])
    if kind == "rgb":
        ref.controlnet_cond_embedding = torch.nn.Conv2d(dsc.CONDITION_CHANNELS[kind], width[0], 3, padding=1)
    ref.load_state_dict(spatial, strict=True)
    ref.eval()
    with torch.no_grad():
        emb = ref.time_embedding(ref.time_proj(timesteps))
        h = ref.conv_in(torch.zeros(hint.shape[0], 4, *context_size(hint, kind)))  # the noisy input, zeroed
        h = h + ref.controlnet_cond_embedding(hint)
        residuals = [h]
        for level, block in enumerate(ref.down_blocks):
            attentions = getattr(block, "attentions", None)
            for j, resnet in enumerate(block.resnets):
                h = resnet(h, emb)
                if attentions is not None:
                    h = attentions[j](h, encoder_hidden_states=context, return_dict=False)[0]
                if motion:
                    prefix = f"down_blocks.{level}.motion_modules.{j}.temporal_transformer."
                    h = reference_module(state_dict, prefix, h, frames).float()
                residuals.append(h)
            if block.downsamplers is not None:
                h = block.downsamplers[0](h)
                residuals.append(h)
        h = ref.mid_block(h, emb, encoder_hidden_states=context)
        return [conv(r) for conv, r in zip(ref.controlnet_down_blocks, residuals)], ref.controlnet_mid_block(h)


def context_size(hint, kind):
    """The latent size a hint belongs to: RGB hints are latents, scribble hints pixels (8x)."""
    scale = 1 if kind == "rgb" else 8
    return hint.shape[-2] // scale, hint.shape[-1] // scale


@pytest.mark.parametrize("kind, width", [("scribble", TINY), ("rgb", TINY), ("rgb", dsc.FULL_WIDTH)])
def test_the_forward_matches_the_reference(kind, width):
    sparse, path = load(kind, width)
    state_dict = torch.load(path, weights_only=True)["controlnet"]
    frames, size = 6, 4
    gen = torch.Generator().manual_seed(3)
    pixels = size * (1 if kind == "rgb" else 8)
    condition = torch.randn(frames, dsc.CONDITION_CHANNELS[kind] - 1, pixels, pixels, generator=gen)
    mask = torch.zeros(frames, 1, pixels, pixels)
    mask[[0, 4]] = 1.0
    hint = torch.cat([condition * mask, mask], dim=1)  # keyframes at frames 0 and 4
    timesteps = torch.full((frames,), 480.0)
    context = torch.randn(frames, 77, 768, generator=gen)
    noisy = torch.randn(frames, 4, size, size, generator=gen)  # must not matter: SparseCtrl zeroes it

    model = sparse.control.control_model
    model.frames = frames
    with torch.no_grad():
        ours = model(x=noisy, hint=hint, timesteps=timesteps, context=context)
    outputs, middle = reference_forward(state_dict, kind, width, hint, timesteps, context, frames)

    assert len(ours["output"]) == len(outputs) == 12
    for got, expected in zip(ours["output"] + ours["middle"], outputs + [middle]):
        torch.testing.assert_close(got, expected, rtol=0, atol=TOLERANCE)
    assert min(float(r.std()) for r in outputs) > 1e-3  # residuals that carry something
    # The temporal layers matter at this tolerance: the reference without them is far off.
    flat, _ = reference_forward(state_dict, kind, width, hint, timesteps, context, frames, motion=False)
    assert max(float((a - b).abs().max()) for a, b in zip(flat, outputs)) > 100 * TOLERANCE


@pytest.fixture(scope="module")
def animated():
    path = mm.motion_module_file("animatelcm_t2v", TINY, dtype=torch.float32)
    return attach_motion_model(tiny_sd15_model(tracks_input=True), load_motion_model_file(str(path), path.name), 0.2,
                               "auto")


@pytest.fixture(scope="module")
def scribble():
    return load("scribble", TINY)[0]


def numbered_keyframes(count, size=64):
    """IMAGE [count, H, W, 3], keyframe k filled with (k + 1) / 100, so a hint tells which keyframe it is."""
    return ((torch.arange(count, dtype=torch.float32) + 1) / 100).reshape(count, 1, 1, 1).expand(count, size, size, 3)


def sample(model, frames, positive, negative, cfg=1.5, steps=2):
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    return KSampler.execute(model, positive, negative, latent, 3, steps, cfg, 1.0).args[0]["samples"]


def prompts():
    gen = torch.manual_seed(9)
    return [[torch.randn(1, 77, 768, generator=gen), {}]], [[torch.randn(1, 77, 768, generator=gen), {}]]


def apply(sparse, images, indices="", strength=1.0, positive=None, negative=None):
    if positive is None:
        positive, negative = prompts()
    return ApplySparseCtrl.execute(positive, negative, sparse, images, indices, strength, 0.0, 1.0).args


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_keyframe_k_reaches_its_frame_in_every_window_and_a_window_without_one_gets_none(animated, scribble,
                                                                                        schedule):
    frames, indices = 40, [2, 37]
    windows, calls = [], []

    def record_window(apply_model, args):
        windows.append((list(args["c"]["transformer_options"]["ad_params"]["sub_idxs"]), args["cond_or_uncond"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    def record_call(module, args, kwargs):
        hint = kwargs["hint"]
        calls.append((module.frames, (hint[:, 0, 0, 0] * 100).round().int().tolist(),
                      hint[:, 3, 0, 0].round().int().tolist()))

    model = ContextOptions.execute(animated, 16, 4, 2 if "uniform" in schedule else 1, schedule,
                                   "pyramid").args[0].clone()
    model.set_model_unet_function_wrapper(record_window)
    hook = scribble.control.control_model.register_forward_pre_hook(record_call, with_kwargs=True)
    try:
        sample(model, frames, *apply(scribble, numbered_keyframes(2), "2, -3"), steps=1)
    finally:
        hook.remove()

    expected = []
    for window, cond_or_uncond in windows:
        if not set(window) & set(indices):
            continue  # no keyframe: no SparseCtrl call for this window
        keyframe = [indices.index(f) + 1 if f in indices else 0 for f in window]
        expected.append((len(window), keyframe * len(cond_or_uncond),
                         [int(k > 0) for k in keyframe] * len(cond_or_uncond)))
    assert calls == expected
    assert 0 < len(calls) < len(windows)  # some windows hold no keyframe and were left alone


def test_keyframes_change_the_clip_and_strength_zero_does_not(animated, scribble):
    positive, negative = prompts()
    plain = sample(animated, 8, positive, negative)
    steered = sample(animated, 8, *apply(scribble, numbered_keyframes(2), "", 1.0, positive, negative))
    assert (steered - plain).abs().max() > 1e-3
    assert apply(scribble, numbered_keyframes(2), "", 0.0, positive, negative) == (positive, negative)


def test_keyframe_placement():
    assert keyframe_frames(2, 16, None) == {0: 0, 15: 1}
    assert keyframe_frames(3, 16, None) == {0: 0, 7: 1, 15: 2}  # int(linspace(0, 15, 3))
    assert keyframe_frames(1, 16, None) == {0: 0}
    assert keyframe_frames(2, 32, [0, -1]) == {0: 0, 31: 1}
    assert parse_frame_indices(" 0, 8 ,-1") == [0, 8, -1] and parse_frame_indices("") is None
    with pytest.raises(SparseCtrlError, match="outside the 16-frame clip"):
        keyframe_frames(2, 16, [0, 16])
    with pytest.raises(SparseCtrlError, match="same frame"):
        keyframe_frames(2, 16, [15, -1])
    with pytest.raises(SparseCtrlError, match="one index per image"):
        keyframe_frames(2, 16, [0])
    with pytest.raises(SparseCtrlError, match="whole numbers"):
        parse_frame_indices("0, last")


def test_mismatched_indices_and_rgb_without_vae_are_refused_before_sampling(scribble):
    with pytest.raises(SparseCtrlError, match="one index per image"):
        apply(scribble, numbered_keyframes(3), "0, -1")
    assert "swap them" in ApplySparseCtrl.validate_inputs(0.6, 0.2)
    assert ApplySparseCtrl.validate_inputs(0.0, 1.0) is True
    rgb = load("rgb", TINY)[0]
    with pytest.raises(SparseCtrlError, match="connect the checkpoint's VAE"):
        apply(rgb, numbered_keyframes(2))


def test_rgb_keyframes_are_scaled_vae_latents():
    class Vae:
        def encode(self, pixels):
            return pixels.movedim(-1, 1)[:, :1].repeat(1, 4, 1, 1)[..., ::8, ::8]

    rgb = load("rgb", TINY)[0]
    latents = keyframe_condition(rgb, numbered_keyframes(2), Vae())
    assert latents.shape == (2, 4, 8, 8)
    torch.testing.assert_close(latents[:, 0, 0, 0], torch.tensor([0.01, 0.02]) * 0.18215)


def test_files_that_are_not_sparsectrl_are_told_apart(tmp_path):
    with pytest.raises(SparseCtrlError, match="expected a SparseCtrl model"):
        load_sparse_control_file(str(mm.motion_module_file("animatediff_v3", TINY, dtype=torch.float32)), "mm.ckpt")
    with pytest.raises(SparseCtrlError, match="expected a SparseCtrl model"):
        load_sparse_control_file(str(lora_file()), "lora.safetensors")
    damaged = tmp_path / "v3_sd15_sparsectrl_rgb.ckpt"
    damaged.write_bytes(dsc.sparse_control_file("rgb", TINY).read_bytes()[:1000])
    with pytest.raises(SparseCtrlError, match="cannot read the file: it is corrupt, incomplete"):
        load_sparse_control_file(str(damaged), damaged.name)
    state_dict = dsc.sparse_control_state_dict("scribble", TINY)
    no_motion = {k: v for k, v in state_dict.items() if ".motion_modules." not in k}
    with pytest.raises(SparseCtrlError, match="without motion modules"):
        load_sparse_control(no_motion, "controlnet.safetensors", tiny_unet_config())
    with pytest.raises(SparseCtrlError, match="not SD1.5's"):
        load_sparse_control(state_dict, "narrow.ckpt")  # undetectable without its config
    # The motion-model loader sends a SparseCtrl file to the right node.
    with pytest.raises(MotionModelFormatError, match="ALCM_LoadSparseCtrl"):
        load_motion_model(state_dict, "v3_sd15_sparsectrl_scribble.ckpt")

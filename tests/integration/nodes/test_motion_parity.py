"""Parity: the UNet with a motion model attached, run by ComfyUI's sampler, against an independent reference.

ComfyUI side: `attach_motion_model` on the tiny SD1.5 MODEL, one Euler step through `comfy.sample.sample_custom`
with cfg 2, so core's `calc_cond_batch` stacks the cond and uncond chunks (F frames each) into ONE UNet call. A
DIFFUSION_MODEL wrapper records that call: the scaled input, the timestep, the context, `cond_or_uncond` and the
raw UNet output (the noise prediction eps).

Reference side, sharing nothing with patching/motion_injection.py or motion_models/: the original UNet (with the pack's
layers ejected) is walked block by block, calling each ResBlock, SpatialTransformer, Downsample, Upsample and conv
itself, and the float64 reference temporal transformer of tests/fixtures/reference_motion.py, fed the weights read
from the file with safetensors, runs where docs/reference.md section 2 puts it. Each chunk (cond, uncond) runs
as its own F-frame clip. The two are compared at the level of the raw UNet output for the same scaled input
x / sqrt(sigma^2 + 1) and the same timestep.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file

import comfy.model_management
import comfy.sample
import comfy.samplers
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, Upsample
from comfy.ldm.modules.diffusionmodules.util import timestep_embedding
from comfy.patcher_extension import WrappersMP

from animatelcm.patching.i2v_features import attach_image
from animatelcm.patching.motion_injection import MotionModuleLayer, attach_motion_model, load_motion_model_file
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.tests.fixtures.reference_i2v import reference_image_encoder
from animatelcm.tests.fixtures.reference_motion import reference_module

FRAMES = 16
TIMESTEP = 499  # mid-schedule: sigma 2.28 on the linear betas
CFG = 2.0  # anything but 1.0: at cfg 1 core skips the uncond pass
TOLERANCE = 1e-4  # max abs difference of the raw UNet output, float32


@pytest.fixture(scope="module")
def base_model():
    return tiny_sd15_model()


def block_plan():
    """Where each motion module goes, written from the doc: (UNet part, block index) -> checkpoint key prefix.

    input_blocks: 0 is conv_in, then per level two blocks and a Downsample; output_blocks: three per level."""
    plan = {}
    for level in range(4):
        for j in range(2):
            plan["input", 1 + 3 * level + j] = f"down_blocks.{level}.motion_modules.{j}.temporal_transformer."
        for j in range(3):
            plan["output", 3 * level + j] = f"up_blocks.{level}.motion_modules.{j}.temporal_transformer."
    plan["middle", 0] = "mid_block.motion_modules.0.temporal_transformer."
    return plan


def reference_unet(unet, x, t, context, motion_sd, num_frames, image_features=None):
    """The original SD1.5 UNet forward, sub-layer by sub-layer, with the reference motion module inserted after the
    SpatialTransformer (or the ResBlock where a level has none), before any Upsample, and in the middle block between
    the SpatialTransformer and the second ResBlock. `motion_sd` None runs the plain UNet. `image_features`
    (AnimateLCM-I2V, one map per down level) are added after the second resnet/attention of each level, before its
    motion module."""
    plan = block_plan()

    def temporal(h, prefix):  # float64 reference, back to the UNet's float32
        if motion_sd is None or prefix is None:
            return h
        return reference_module(motion_sd, prefix, h, num_frames).to(h.dtype)

    def run(block, h, emb, prefix, output_shape=None, add=None):
        for layer in block:
            if isinstance(layer, Upsample):  # the motion module runs before any Upsample
                h, prefix = temporal(h, prefix), None
                h = layer(h, output_shape=output_shape)
            elif isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context, {})
                if block is unet.middle_block:  # between the SpatialTransformer and the second ResBlock
                    h, prefix = temporal(h, prefix), None
            elif isinstance(layer, Downsample) or type(layer).__name__ == "Conv2d":
                h = layer(h)
            else:
                raise AssertionError(f"unexpected layer in the original UNet: {type(layer).__name__}")
        if add is not None:
            h = h + add.to(h.dtype)
        return temporal(h, prefix)  # at the end of the block, unless it already ran

    emb = unet.time_embed(timestep_embedding(t, unet.model_channels, repeat_only=False).to(x.dtype))
    h, skips = x, []
    for i, block in enumerate(unet.input_blocks):
        level, j = divmod(i - 1, 3)
        add = image_features[level] if image_features is not None and i > 0 and j == 1 else None
        h = run(block, h, emb, plan.get(("input", i)), add=add)
        skips.append(h)
    h = run(unet.middle_block, h, emb, plan["middle", 0])
    for i, block in enumerate(unet.output_blocks):
        h = torch.cat([h, skips.pop()], dim=1)
        h = run(block, h, emb, plan["output", i], output_shape=skips[-1].shape if skips else None)
    return unet.out(h)


def one_batched_step(model, noise, sigma, cond, uncond):
    """One Euler step through ComfyUI's sampling; returns every UNet call it made, as recorded by a wrapper."""
    calls = []

    def record(executor, x, timesteps, context, *args, **kwargs):
        options = kwargs.get("transformer_options", args[2] if len(args) > 2 else {})
        out = executor(x, timesteps, context, *args, **kwargs)
        calls.append({"x": x.clone(), "t": timesteps.clone(), "context": context.clone(), "out": out.clone(),
                      "cond_or_uncond": list(options["cond_or_uncond"])})
        return out

    recorded = model.clone()
    recorded.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "parity-test", record)
    latent = torch.zeros_like(noise)
    comfy.sample.sample_custom(recorded, noise, CFG, comfy.samplers.sampler_object("euler"),
                               torch.tensor([sigma, 0.0]), [[cond, {}]], [[uncond, {}]], latent,
                               disable_pbar=True, seed=0)
    return calls


def motion_file(kind, tmp_path):
    """A float32 motion module in the official key layout. The v2 file's stored position encoding (32 frames) gets
    noise added, so that parity also shows the stored `pe` is the one used rather than one computed in code."""
    path = mm.motion_module_file(kind, mm.TINY_WIDTH, dtype=torch.float32, seed=3 if kind == "animatelcm_t2v" else 4)
    if kind != "animatediff_v2":
        return path
    state_dict = load_file(str(path))
    gen = torch.Generator().manual_seed(5)
    for key in sorted(k for k in state_dict if k.endswith("pos_encoder.pe")):
        assert state_dict[key].shape[1] == 32
        state_dict[key] = state_dict[key] + 0.5 * torch.randn(state_dict[key].shape, generator=gen)
    path = tmp_path / mm.OFFICIAL_NAMES[kind].replace(".ckpt", ".safetensors")
    save_file(state_dict, str(path))
    return path


@pytest.mark.parametrize("kind", ["animatelcm_t2v", "animatediff_v2"])
def test_batched_cond_and_uncond_match_the_reference(base_model, kind, tmp_path):
    """Both chunks in one UNet call give, chunk by chunk, what the reference gives for each clip on its own; the
    plain UNet and a reference that mixes the two chunks into one 2F-frame clip are both far off."""
    path = motion_file(kind, tmp_path)
    motion_sd = load_file(str(path))
    model = attach_motion_model(base_model, load_motion_model_file(str(path), path.name), 1.0, "linear")
    sigma = float(model.get_model_object("model_sampling").sigma(torch.tensor(float(TIMESTEP))))
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn(FRAMES, 4, 8, 8, generator=gen)
    contexts = [torch.randn(1, 77, 768, generator=gen) for _ in range(2)]  # index 0 = cond, 1 = uncond

    calls = one_batched_step(model, noise, sigma, *contexts)
    comfy.model_management.unload_all_models()  # ejects the pack's layers: the reference walks the original UNet

    # ComfyUI ran cond and uncond in ONE UNet call, on the input and timestep we expect
    assert len(calls) == 1
    call = calls[0]
    assert sorted(call["cond_or_uncond"]) == [0, 1] and call["x"].shape[0] == 2 * FRAMES
    expected_x = noise * sigma / (sigma**2 + 1) ** 0.5  # EPS: x = noise * sigma, c_in = 1 / sqrt(sigma^2 + 1)
    torch.testing.assert_close(call["x"], torch.cat([expected_x] * 2), atol=1e-6, rtol=0)
    assert torch.equal(call["t"], torch.full((2 * FRAMES,), float(TIMESTEP)))
    order = call["cond_or_uncond"]
    for k, which in enumerate(order):
        chunk = call["context"][k * FRAMES:(k + 1) * FRAMES]
        assert torch.equal(chunk, contexts[which].expand(FRAMES, -1, -1))

    unet = base_model.model.diffusion_model
    assert not any(isinstance(m, MotionModuleLayer) for m in unet.modules())
    t = torch.full((FRAMES,), float(TIMESTEP))
    ctx = [contexts[which].expand(FRAMES, -1, -1) for which in order]
    with torch.no_grad():
        references = {
            "reference": torch.cat([reference_unet(unet, expected_x, t, c, motion_sd, FRAMES) for c in ctx]),
            "plain UNet": torch.cat([reference_unet(unet, expected_x, t, c, None, FRAMES) for c in ctx]),
            "one mixed 2F clip": reference_unet(unet, torch.cat([expected_x] * 2), torch.cat([t] * 2),
                                                torch.cat(ctx), motion_sd, 2 * FRAMES),
        }
        if kind == "animatediff_v2":
            formula = {k: v for k, v in motion_sd.items() if not k.endswith("pos_encoder.pe")}
            references["formula pe"] = torch.cat([reference_unet(unet, expected_x, t, c, formula, FRAMES)
                                                  for c in ctx])
    differences = {name: (call["out"] - ref).abs().max().item() for name, ref in references.items()}
    print(f"{kind}, cond_or_uncond {order}, max |eps| {call['out'].abs().max().item():.3f}, max abs difference to: "
          + ", ".join(f"{name} {d:.3g}" for name, d in differences.items()))
    assert differences.pop("reference") <= TOLERANCE
    # The comparison can fail: without the motion modules, with cond and uncond attending to each other as one
    # clip, or (v2) with the position encoding computed instead of the stored one, the output is far off
    assert all(d > 100 * TOLERANCE for d in differences.values()), differences


def test_i2v_image_features_in_the_batched_unet_match_the_reference(base_model):
    """AnimateLCM-I2V: the adapter's features (reference_i2v, float64, from the file's weights) added where section 4
    puts them, frame positions counted within each cond/uncond chunk. Without the features, or with positions counted
    across the whole batch, the output is far off."""
    path = mm.motion_module_file("animatelcm_i2v", mm.TINY_WIDTH, dtype=torch.float32, seed=3)
    motion_sd = load_file(str(path))
    gen = torch.Generator().manual_seed(8)
    image_latent = torch.randn(1, 4, 8, 8, generator=gen)
    model = attach_motion_model(base_model, load_motion_model_file(str(path), path.name), 1.0, "auto")
    model = attach_image(model, image_latent, 0.8, 0.014)
    sigma = float(model.get_model_object("model_sampling").sigma(torch.tensor(float(TIMESTEP))))
    noise = torch.randn(FRAMES, 4, 8, 8, generator=gen)
    contexts = [torch.randn(1, 77, 768, generator=gen) for _ in range(2)]

    [call] = one_batched_step(model, noise, sigma, *contexts)
    comfy.model_management.unload_all_models()
    assert sorted(call["cond_or_uncond"]) == [0, 1]

    unet = base_model.model.diffusion_model
    with torch.no_grad():
        def reference(positions_of_chunk):
            return torch.cat([reference_unet(unet, call["x"][k * FRAMES:(k + 1) * FRAMES],
                                             call["t"][k * FRAMES:(k + 1) * FRAMES],
                                             call["context"][k * FRAMES:(k + 1) * FRAMES], motion_sd, FRAMES,
                                             positions_of_chunk(k))
                              for k in range(2)])

        def features(positions):
            return reference_image_encoder(motion_sd, image_latent, positions, 0.8)

        references = {
            "reference": reference(lambda k: features(list(range(FRAMES)))),
            "no image features": reference(lambda k: None),
            "positions across the batch": reference(lambda k: features(list(range(k * FRAMES, (k + 1) * FRAMES)))),
        }
    differences = {name: (call["out"] - ref).abs().max().item() for name, ref in references.items()}
    print(f"I2V, max |eps| {call['out'].abs().max().item():.3f}, max abs difference to: "
          + ", ".join(f"{name} {d:.3g}" for name, d in differences.items()))
    assert differences.pop("reference") <= TOLERANCE
    assert all(d > 100 * TOLERANCE for d in differences.values()), differences

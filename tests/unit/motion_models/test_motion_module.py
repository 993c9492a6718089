"""The motion module against an independent reference written from docs/reference.md section 2.

The reference (tests/fixtures/reference_motion.py) uses explicit operations only (per-frame group statistics by
reshape, softmax(QK^T / sqrt(d)) V, the sinusoidal formula as the doc writes it) and runs in float64 on the raw
state dict, so a wrong key mapping, a transposed reshape or diffusers' all-frames normalisation shows up as a
numeric difference.
"""

import math

import pytest
import torch
from einops import rearrange
from torch import nn

from animatelcm.motion_models.checkpoint import load_motion_model
from animatelcm.motion_models.motion_module import MotionModel, Placement, TemporalTransformer
from animatelcm.devkit import motion_modules as mm
from animatelcm.tests.fixtures.reference_motion import reference_module

TOLERANCE = 1e-5  # float32 model against the float64 reference


def loaded(kind):
    sd = mm.motion_module_state_dict(kind, mm.TINY_WIDTH)
    return sd, load_motion_model(sd, f"{kind}.safetensors").model


def frames(clips, num_frames, channels, seed=0, height=3, width=5):
    """Frames with different statistics per frame (offset and spread), H != W to catch transposed reshapes."""
    gen = torch.Generator().manual_seed(seed)
    n = clips * num_frames
    spread = torch.linspace(0.5, 3.0, n).view(n, 1, 1, 1)
    offset = torch.linspace(-2.0, 2.0, n).view(n, 1, 1, 1)
    return torch.randn(n, channels, height, width, generator=gen) * spread + offset


def module_at(model, prefix) -> TemporalTransformer:
    return next(m for p, m in model.in_unet_order() if p.key_prefix == prefix)


@pytest.mark.parametrize("kind", ["animatelcm_t2v", "animatediff_v1"])
def test_one_module_matches_the_reference(kind):
    sd, model = loaded(kind)
    prefix = "down_blocks.1.motion_modules.1.temporal_transformer."
    x = frames(2, 16, 64)
    with torch.no_grad():
        out = module_at(model, prefix)(x, 16)
    expected = reference_module(sd, prefix, x, 16)
    assert (out.double() - expected).abs().max() <= TOLERANCE
    assert (out - x).abs().max() > 0.1  # the temporal path really contributed


@pytest.mark.parametrize("kind, count", [("animatelcm_t2v", 21), ("animatediff_v1", 20)])
def test_whole_stack_matches_the_reference(kind, count):
    """Every module in UNet order. Modules of one width are chained on the reference's running output, and each
    module gets that same input, so a difference is the module's own rather than float32 rounding compounded."""
    sd, model = loaded(kind)
    placed = model.in_unet_order()
    assert len(placed) == count
    running = {c: frames(1, 8, c, seed=c).double() for c in set(mm.TINY_WIDTH)}
    with torch.no_grad():
        for placement, module in placed:
            c = module.proj_in.in_features
            out = module(running[c].float(), 8)
            running[c] = reference_module(sd, placement.key_prefix, running[c].float(), 8)
            assert (out.double() - running[c]).abs().max() <= TOLERANCE, placement


def test_group_norm_is_per_frame_not_over_all_frames():
    sd, model = loaded("animatelcm_t2v")
    prefix = "up_blocks.3.motion_modules.0.temporal_transformer."
    x = frames(1, 8, 32)
    with torch.no_grad():
        out = module_at(model, prefix)(x, 8).double()
    assert (out - reference_module(sd, prefix, x, 8)).abs().max() <= TOLERANCE
    assert (out - reference_module(sd, prefix, x, 8, per_frame=False)).abs().max() > 0.1


def test_scale_zero_returns_the_input_exactly_and_scale_is_linear():
    _, model = loaded("animatelcm_t2v")
    module = module_at(model, "mid_block.motion_modules.0.temporal_transformer.")
    x = frames(2, 4, 128)
    with torch.no_grad():
        assert torch.equal(module(x, 4, scale=0.0), x)
        full, half = module(x, 4), module(x, 4, scale=0.5)
    torch.testing.assert_close(half, x + 0.5 * (full - x), atol=1e-5, rtol=0)


def test_frames_are_mixed_within_a_clip_only():
    _, model = loaded("animatelcm_t2v")
    module = module_at(model, "down_blocks.0.motion_modules.0.temporal_transformer.")
    x = frames(2, 4, 32)
    changed = x.clone()
    changed[0] = torch.randn(changed[0].shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, out_changed = module(x, 4), module(changed, 4)
    assert (out_changed[3] - out[3]).abs().max() > 1e-3  # frame 0 reaches frame 3 of the same clip
    assert torch.equal(out_changed[4:], out[4:])  # the second clip is untouched


def test_two_clips_in_one_batch_equal_each_clip_alone():
    _, model = loaded("animatelcm_t2v")
    module = module_at(model, "up_blocks.1.motion_modules.2.temporal_transformer.")
    x = frames(2, 6, 128)
    with torch.no_grad():
        together = module(x, 6)
        alone = torch.cat([module(x[:6], 6), module(x[6:], 6)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind, limit", [("animatelcm_t2v", 64), ("animatediff_v1", 24), ("animatediff_v2", 32)])
def test_clips_longer_than_the_position_encoding_are_refused(kind, limit):
    _, model = loaded(kind)
    assert model.max_frames == limit
    module = model.in_unet_order()[0][1]
    with torch.no_grad():
        module(torch.randn(limit, 32, 1, 1), limit)
        with pytest.raises(ValueError, match=f"{limit + 1} frames exceed the {limit} .*context windows"):
            module(torch.randn(limit + 1, 32, 1, 1), limit + 1)


def test_a_batch_that_is_not_whole_clips_is_refused():
    module = TemporalTransformer(32)
    with pytest.raises(ValueError, match="not a whole number of 4-frame clips"):
        module(torch.randn(6, 32, 2, 2), 4)


class RecordingOps:
    """Stands in for a ComfyUI ops class: same constructor arguments, records dtype and device."""
    made = []

    class Linear(nn.Linear):
        def __init__(self, *args, **kwargs):
            RecordingOps.made.append(("Linear", kwargs["dtype"], kwargs["device"]))
            super().__init__(*args, **kwargs)

    class GroupNorm(nn.GroupNorm):
        def __init__(self, *args, **kwargs):
            RecordingOps.made.append(("GroupNorm", kwargs["dtype"], kwargs["device"]))
            super().__init__(*args, **kwargs)

    class LayerNorm(nn.LayerNorm):
        def __init__(self, *args, **kwargs):
            RecordingOps.made.append(("LayerNorm", kwargs["dtype"], kwargs["device"]))
            super().__init__(*args, **kwargs)


def test_operations_dtype_and_attention_are_used():
    RecordingOps.made.clear()
    calls = []

    def attention(q, k, v, heads, mask=None):
        calls.append((q.shape, heads))
        weights = torch.softmax(rearrange(q, "b n (h d) -> b h n d", h=heads) @
                                rearrange(k, "b n (h d) -> b h d n", h=heads) / math.sqrt(q.shape[-1] / heads), -1)
        return rearrange(weights @ rearrange(v, "b n (h d) -> b h n d", h=heads), "b h n d -> b n (h d)")

    sd = mm.motion_module_state_dict("animatelcm_t2v", mm.TINY_WIDTH)
    model = load_motion_model(sd, "t2v", operations=RecordingOps, dtype=torch.float64, device="cpu",
                              attention=attention).model
    assert {kind for kind, _, _ in RecordingOps.made} == {"Linear", "GroupNorm", "LayerNorm"}
    assert len(RecordingOps.made) == 21 * (12 + 1 + 3)
    assert all(dtype == torch.float64 and device == "cpu" for _, dtype, device in RecordingOps.made)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert not any(type(m) in (nn.Linear, nn.GroupNorm, nn.LayerNorm) for m in model.modules())

    prefix = "down_blocks.2.motion_modules.0.temporal_transformer."
    x = frames(1, 4, 128).double()
    with torch.no_grad():
        out = module_at(model, prefix)(x, 4)
    assert calls == [(torch.Size([3 * 5, 4, 128]), 8)] * 2
    assert (out - reference_module(sd, prefix, x, 4)).abs().max() <= 1e-10


def test_placements_name_the_checkpoint_keys_and_comfyui_blocks():
    model = MotionModel(mm.TINY_WIDTH, device="meta")
    placed = [placement for placement, _ in model.in_unet_order()]
    assert [p.key_prefix for p in placed] == [prefix for prefix, _ in mm.module_prefixes(mm.TINY_WIDTH)]
    # SD1.5 in ComfyUI: input_blocks 1, 2 | 4, 5 | 7, 8 | 10, 11 (0 is conv_in, 3/6/9 downsample); output_blocks 0-11
    down = [("input_blocks", i) for i in (1, 2, 4, 5, 7, 8, 10, 11)]
    assert [p.ldm_block for p in placed if p.block == "down"] == down
    assert [p.ldm_block for p in placed if p.block == "mid"] == [("middle_block", 1)]
    assert [p.ldm_block for p in placed if p.block == "up"] == [("output_blocks", i) for i in range(12)]
    assert placed[8] == Placement("mid", 0, 0) and placed[-1] == Placement("up", 3, 2)


@pytest.mark.parametrize("kind", ["animatelcm_t2v", "animatediff_v1", "animatediff_v2"])
def test_full_width_model_has_the_released_layout(kind):
    pe_length, mid_block, _ = mm.KINDS[kind]
    model = MotionModel(mm.FULL_WIDTH, mid_block=mid_block, pe_length=pe_length, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == mm.motion_module_layout(kind, mm.FULL_WIDTH)
    if kind == "animatelcm_t2v":  # the released file's parameter count (docs/reference.md section 1)
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 453.2


def test_a_per_frame_or_per_pixel_scale_scales_each_frames_residual():
    _, model = loaded("animatelcm_t2v")
    module = module_at(model, "mid_block.motion_modules.0.temporal_transformer.")
    x = frames(2, 4, 128)
    per_frame = torch.tensor([0.0, 0.5, 1.0, 2.0]).repeat(2).view(8, 1, 1, 1)
    mask = torch.zeros(8, 1, 3, 5)
    mask[:, :, :, :2] = 1.5
    with torch.no_grad():
        full = module(x, 4)
        torch.testing.assert_close(module(x, 4, scale=per_frame), x + per_frame * (full - x), atol=1e-5, rtol=0)
        masked = module(x, 4, scale=mask)
    torch.testing.assert_close(masked, x + mask * (full - x), atol=1e-5, rtol=0)
    assert torch.equal(masked[..., 2:], x[..., 2:])  # where the mask is 0 the frames are untouched


@pytest.mark.parametrize("key_scale", ["per_frame", "per_pixel"])
def test_key_scale_multiplies_the_attention_keys_as_the_reference_does(key_scale):
    sd, model = loaded("animatelcm_t2v")
    prefix = "down_blocks.1.motion_modules.0.temporal_transformer."
    x = frames(2, 6, 64)
    factor = torch.linspace(0.2, 3.0, 12).view(12, 1, 1, 1)
    if key_scale == "per_pixel":
        factor = factor * torch.linspace(0.5, 2.0, 15).view(1, 1, 3, 5)
    with torch.no_grad():
        out = module_at(model, prefix)(x, 6, key_scale=factor)
        plain = module_at(model, prefix)(x, 6)
        assert torch.equal(module_at(model, prefix)(x, 6, key_scale=1.0), plain)
    expected = reference_module(sd, prefix, x, 6, key_scale=factor)
    assert (out.double() - expected).abs().max() <= TOLERANCE
    assert (out - plain).abs().max() > 1e-3  # the factor really changed the attention

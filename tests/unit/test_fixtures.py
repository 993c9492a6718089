"""The generated model files really have the released layouts (counts from docs/reference.md)."""

import math

import pytest
import torch
from safetensors.torch import load_file

from animatelcm.devkit import lora, motion_modules as mm, sd15_checkpoint as sd


def n_params(layout):
    return sum(math.prod(shape) for shape in layout.values())


def test_animatelcm_t2v_layout_matches_the_released_file():
    layout = mm.motion_module_layout("animatelcm_t2v")
    assert len(layout) == 546
    assert round(n_params(layout) / 1e6, 1) == 453.2
    assert not any("pos_encoder" in k for k in layout)
    assert len([k for k in layout if k.endswith("temporal_transformer.proj_out.weight")]) == 21


def test_animatelcm_i2v_adds_the_image_encoder():
    layout = mm.motion_module_layout("animatelcm_i2v")
    encoder = {k: v for k, v in layout.items() if k.startswith("img_encoder.")}
    assert round(n_params(encoder) / 1e6, 1) == 76.8
    assert layout.keys() - encoder.keys() == mm.motion_module_layout("animatelcm_t2v").keys()
    assert {k.split(".")[2] for k in encoder if ".in_conv." in k} == {"2", "4"}


@pytest.mark.parametrize("kind, pe_length, modules", [("animatediff_v1", 24, 20), ("animatediff_v2", 32, 21),
                                                      ("animatediff_v3", 32, 21)])
def test_animatediff_layouts(kind, pe_length, modules):
    layout = mm.motion_module_layout(kind)
    pes = {k: v for k, v in layout.items() if k.endswith("pos_encoder.pe")}
    assert len(pes) == 2 * modules
    assert {v[1] for v in pes.values()} == {pe_length}
    assert any(k.startswith("mid_block.") for k in layout) == (modules == 21)


@pytest.mark.parametrize("kind", sorted(mm.KINDS))
@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_motion_module_files_round_trip(kind, fmt, dtype):
    path = mm.motion_module_file(kind, mm.TINY_WIDTH, fmt=fmt, dtype=dtype)
    state_dict = load_file(path) if fmt == "safetensors" else torch.load(path, weights_only=True)
    assert state_dict.keys() == mm.motion_module_layout(kind, mm.TINY_WIDTH).keys()
    assert all(v.dtype == dtype and torch.isfinite(v).all() for v in state_dict.values())
    # Non-zero output projections: a test can tell whether the temporal path ran.
    assert all(v.abs().min() > 0 for k, v in state_dict.items() if "proj_out" in k and k.endswith("weight"))
    for key, value in state_dict.items():
        if key.endswith("pos_encoder.pe"):
            torch.testing.assert_close(value.float()[0, 1, :2], torch.tensor([math.sin(1.0), math.cos(1.0)]),
                                       atol=1e-3, rtol=0)


def test_files_are_seeded_per_key():
    a = mm.motion_module_state_dict("animatelcm_t2v", mm.TINY_WIDTH, seed=3)
    b = mm.motion_module_state_dict("animatelcm_i2v", mm.TINY_WIDTH, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = mm.motion_module_state_dict("animatelcm_t2v", mm.TINY_WIDTH, seed=4)
    assert not torch.equal(a["mid_block.motion_modules.0.temporal_transformer.proj_out.weight"],
                           c["mid_block.motion_modules.0.temporal_transformer.proj_out.weight"])


def test_sd15_checkpoint_layout_counts():
    assert len(sd.unet_layout()) == 686
    assert round(n_params(sd.unet_layout()) / 1e6, 1) == 859.5
    assert len(sd.vae_layout()) == 248
    assert len(sd.clip_l_layout()) + 1 == 197  # + position_ids
    assert len(sd.checkpoint_layout()) + 1 == 1131


def test_kohya_lora_layout():
    layout = lora.lora_layout(rank=4)
    assert all(k.startswith("lora_unet_") for k in layout)
    modules = {k.split(".")[0] for k in layout}
    assert len(modules) == 16 * 12  # 16 spatial transformers, 12 adapted layers each
    assert layout["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"] == (4, 320, 1, 1)
    assert layout["lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn2_to_k.lora_down.weight"] == (4, 768)

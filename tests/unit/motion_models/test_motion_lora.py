"""Motion-LoRA files read into one weight difference per motion-module layer, and the files that are refused."""

import pytest
import torch

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.weights import materialize
from animatelcm.motion_models.motion_lora import MotionLoRAError, motion_lora_diffs

WIDTH = mm.TINY_WIDTH


def shapes(kind="animatelcm_t2v", width=WIDTH):
    return {key: torch.Size(shape) for key, shape in mm.motion_module_layout(kind, width).items()}


def lora(style, width=WIDTH):
    return materialize(mm.motion_lora_layout(style, width), seed=0)


def expected_keys(mid_block, feed_forward):
    keys = set()
    for prefix, _ in mm.module_prefixes(WIDTH, mid_block):
        block = f"{prefix}transformer_blocks.0."
        for a in range(2):
            keys |= {f"{block}attention_blocks.{a}.{p}.weight" for p in ("to_q", "to_k", "to_v", "to_out.0")}
        if feed_forward:
            keys |= {f"{block}ff.net.0.proj.weight", f"{block}ff.net.2.weight"}
    return keys


def test_animatediff_camera_loras_change_q_k_v_and_out_of_every_attention_block():
    state_dict = lora("animatediff")
    diffs = motion_lora_diffs(state_dict, shapes(), "v2_lora_ZoomIn.ckpt")
    assert set(diffs) == expected_keys(mid_block=True, feed_forward=False) and len(diffs) == 21 * 8
    block = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1."
    up = state_dict[f"{block}processor.to_out_lora.up.weight"]
    down = state_dict[f"{block}processor.to_out_lora.down.weight"]
    torch.testing.assert_close(diffs[f"{block}to_out.0.weight"], up @ down)


def test_motiondirector_temporal_loras_also_change_the_feed_forward():
    state_dict = lora("motiondirector")
    diffs = motion_lora_diffs(state_dict, shapes(), "md_temporal.safetensors")
    assert set(diffs) == expected_keys(mid_block=False, feed_forward=True)
    stem = "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0.ff.net.processor.2_lora"
    key = "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0.ff.net.2.weight"
    assert diffs[key].shape == (128, 512)
    torch.testing.assert_close(diffs[key], state_dict[f"{stem}.up.weight"] @ state_dict[f"{stem}.down.weight"])


def test_mid_block_layers_are_skipped_for_a_motion_model_without_one():
    diffs = motion_lora_diffs(lora("animatediff"), shapes("animatediff_v1"), "v2_lora_PanLeft.ckpt")
    assert set(diffs) == expected_keys(mid_block=False, feed_forward=False)


def spatial_lora():
    down = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight"
    return {down: torch.ones(4, 32), down.replace(".down.", ".up."): torch.ones(32, 4)}


@pytest.mark.parametrize("state_dict, message", [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.ones(4, 32)},
     "a LoRA for the image model .* load it with a LoRA loader"),
    (spatial_lora(), "a spatial LoRA .* belong to the image model"),
    (mm.motion_module_state_dict("animatelcm_t2v", WIDTH), "no motion-LoRA keys"),
    ({}, "no motion-LoRA keys .* no keys at all"),
    ({k: v for k, v in lora("animatediff").items() if not k.endswith("to_q_lora.up.weight")}, "lack their up or down"),
    (lora("animatediff", width=(64, 128, 256, 256)), "another width"),
])
def test_files_that_are_not_motion_loras_for_this_model_are_refused_with_the_reason(state_dict, message):
    with pytest.raises(MotionLoRAError, match=message):
        motion_lora_diffs(state_dict, shapes(), "file.safetensors")


def test_a_lora_with_layers_the_motion_model_lacks_is_for_another_model():
    diffs_for = {k.replace("up_blocks.3.", "up_blocks.4."): v for k, v in lora("animatediff").items()}
    with pytest.raises(MotionLoRAError, match="has no layer up_blocks.4.*another motion model"):
        motion_lora_diffs(diffs_for, shapes(), "hotshot.safetensors")

"""The diffusers -> ComfyUI key map of the AnimateLCM-SVD-xt UNet, and the files it refuses, with their messages.

Layouts only (meta tensors: nothing is computed). The map is built as the node builds it, from ComfyUI's own
SD-UNet map (`comfy.utils.unet_to_diffusers`), so this file imports ComfyUI for that helper and for ComfyUI's
VideoUNet, whose keys the map must produce; the forward parity is in tests/integration/nodes/test_svd_loader.py.
"""

import pytest
import torch

from animatelcm.motion_models.svd_unet import (EXAMPLE_KEY, SVDUNetFormatError, convert_svd_unet,
                                               identify_svd_unet, svd_key_map)
from animatelcm.devkit import lora, motion_modules as mm, sd15_checkpoint as sd, svd_unet as fx
import comfy.model_detection
import comfy.utils

NAME = "AnimateLCM-SVD-xt.safetensors"
WIDTHS = {"tiny": fx.TINY_CHANNELS, "svd_xt": fx.SVD_XT_CHANNELS}


def meta(layout, prefix=""):
    return {prefix + k: torch.empty(shape, device="meta") for k, shape in layout.items()}


@pytest.fixture(scope="module", params=sorted(WIDTHS))
def layouts(request):
    """(diffusers layout, ComfyUI VideoUNet layout, key map) at one width."""
    width = WIDTHS[request.param]
    return (fx.diffusers_layout(fx.diffusers_config(width)), fx.comfy_unet_layout(width),
            svd_key_map(comfy.utils.unet_to_diffusers(fx.comfy_unet_config(width))))


@pytest.fixture(scope="module")
def tiny():
    return (fx.diffusers_layout(fx.TINY_CONFIG), fx.comfy_unet_layout(),
            svd_key_map(comfy.utils.unet_to_diffusers(fx.comfy_unet_config())))


def test_full_width_config_is_svd_xt():
    assert fx.diffusers_config()["num_attention_heads"] == (5, 10, 20, 20)
    from diffusers import UNetSpatioTemporalConditionModel

    with torch.device("meta"):
        defaults = UNetSpatioTemporalConditionModel().config  # diffusers' defaults are SVD-xt's
    for key, value in fx.diffusers_config().items():
        if key != "sample_size":
            assert tuple(value) == tuple(defaults[key]) if isinstance(value, tuple) else value == defaults[key], key


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_the_fixture_config_is_what_comfyui_detects(width):
    channels = WIDTHS[width]
    detected = comfy.model_detection.detect_unet_config(meta(fx.comfy_unet_layout(channels)), "")
    assert detected == fx.comfy_unet_config(channels)


def test_every_diffusers_key_maps_once_onto_every_videounet_key_with_the_same_shape(layouts):
    diffusers, videounet, key_map = layouts
    assert diffusers.keys() <= key_map.keys(), sorted(diffusers.keys() - key_map.keys())[:5]
    targets = [key_map[k] for k in diffusers]
    assert len(set(targets)) == len(targets) == len(diffusers)  # one diffusers key per ComfyUI key
    assert set(targets) == videounet.keys()
    assert all(diffusers[k] == videounet[key_map[k]] for k in diffusers)


def test_the_spatial_part_is_comfyuis_own_map(tiny):
    diffusers, _, key_map = tiny
    spatial = comfy.utils.unet_to_diffusers(fx.comfy_unet_config())
    reused = [k for k in diffusers if k in spatial]
    assert len(reused) > 100 and all(key_map[k] == spatial[k] for k in reused)
    for suffix in ("spatial_res_block.conv1.weight", "temporal_res_block.conv1.weight", "time_mixer.mix_factor"):
        assert key_map[f"down_blocks.0.resnets.0.{suffix}"] == {
            "spatial_res_block.conv1.weight": "input_blocks.1.0.in_layers.2.weight",
            "temporal_res_block.conv1.weight": "input_blocks.1.0.time_stack.in_layers.2.weight",
            "time_mixer.mix_factor": "input_blocks.1.0.time_mixer.mix_factor"}[suffix]
    assert key_map["mid_block.attentions.0.temporal_transformer_blocks.0.ff_in.net.0.proj.weight"] == (
        "middle_block.1.time_stack.0.ff_in.net.0.proj.weight")
    assert key_map["up_blocks.3.attentions.2.time_pos_embed.linear_2.bias"] == (
        "output_blocks.11.1.time_pos_embed.2.bias")
    assert key_map["add_embedding.linear_1.weight"] == "label_emb.0.0.weight"
    assert key_map["up_blocks.0.upsamplers.0.conv.weight"] == "output_blocks.2.1.conv.weight"
    assert not any(k.startswith("class_embedding.") for k in key_map)


def test_convert_renames_every_tensor_without_reading_values(tiny):
    diffusers, videounet, key_map = tiny
    converted = convert_svd_unet(meta(diffusers), key_map, videounet, NAME)
    assert converted.keys() == videounet.keys()
    assert all(v.is_meta for v in converted.values())


def rejected(state_dict, *fragments, key_map=None, expected=None, name=NAME):
    with pytest.raises(SVDUNetFormatError) as error:
        if key_map is None:
            identify_svd_unet(state_dict, name)
        else:
            convert_svd_unet(state_dict, key_map, expected, name)
    message = str(error.value)
    assert message.startswith(f"{name}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


EXPECTED = ("expected the AnimateLCM-SVD-xt UNet (diffusers UNetSpatioTemporalConditionModel keys such as "
            f"{EXAMPLE_KEY})")
WHERE = "in models/diffusion_models (or models/unet)"


def test_a_diffusers_sd15_unet_is_refused():
    rejected(meta(fx.sd_unet_diffusers_layout("sd15")), "this is an SD1.5 UNet in diffusers layout",
             "no temporal layers", EXPECTED, WHERE)


def test_a_diffusers_sdxl_unet_is_refused():
    rejected(meta(fx.sd_unet_diffusers_layout("sdxl", 320)), "this is an SDXL UNet in diffusers layout", EXPECTED)


def test_an_ldm_sd15_unet_is_refused():
    rejected(meta(sd.unet_layout(32)), "this is an SD1.5 UNet with LDM names", EXPECTED)


def test_an_ldm_sdxl_unet_is_refused():
    spatial = comfy.utils.unet_to_diffusers({
        "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10})
    diffusers = fx.sd_unet_diffusers_layout("sdxl", 320)
    ldm = {spatial[k]: shape for k, shape in diffusers.items() if k in spatial}
    assert "input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight" in ldm
    rejected(meta(ldm), "this is an SDXL UNet with LDM names", EXPECTED)


def test_a_motion_module_is_refused():
    rejected(meta(mm.motion_module_layout("animatelcm_t2v", mm.TINY_WIDTH)), "this is a motion module",
             "down_blocks.0.motion_modules.0.", "Put motion modules in models/animatediff_models",
             "Load AnimateLCM Motion Model", EXPECTED)


def test_full_checkpoints_are_refused():
    rejected(meta(fx.comfy_unet_layout(), "model.diffusion_model."), "this is a full SVD checkpoint",
             "svd_xt.safetensors", "Image Only Checkpoint Loader", EXPECTED)
    rejected(meta(sd.checkpoint_layout(32)), "this is a full Stable Diffusion checkpoint", EXPECTED)


def test_an_svd_unet_in_comfyui_names_is_sent_to_the_core_loader():
    rejected(meta(fx.comfy_unet_layout()), "an SVD UNet already in ComfyUI's names", "Load Diffusion Model")


def test_a_lora_an_empty_file_and_anything_else_are_refused():
    rejected(meta(lora.lora_layout(4, 32)), "this is a LoRA", "models/loras", EXPECTED)
    rejected({}, "found no tensors at all", EXPECTED)
    rejected({"weight": torch.empty(3, device="meta")}, EXPECTED, "found keys such as weight")


def test_missing_unexpected_and_misshaped_keys_are_named(tiny):
    diffusers, videounet, key_map = tiny
    state_dict = meta(diffusers)
    gone = "down_blocks.1.attentions.0.temporal_transformer_blocks.0.norm_in.weight"
    del state_dict[gone]
    state_dict["down_blocks.0.resnets.0.temporal_res_block.conv_shortcut.weight"] = torch.empty(1, device="meta")
    wrong = "down_blocks.0.resnets.0.temporal_res_block.conv1.weight"
    state_dict[wrong] = torch.empty(64, 64, 3, 3, device="meta")
    message = rejected(state_dict, "not an AnimateLCM-SVD-xt UNet that fits this SVD MODEL", f"1 missing key ({gone})",
                       "1 unexpected key (down_blocks.0.resnets.0.temporal_res_block.conv_shortcut.weight)",
                       f"1 key with the wrong shape ({wrong} expected [64, 64, 3, 1, 1] found [64, 64, 3, 3])",
                       "download AnimateLCM-SVD-xt again", "Image Only Checkpoint Loader",
                       key_map=key_map, expected=videounet)
    assert "time_stack" not in message  # the file's names, not ComfyUI's


def test_a_file_for_another_width_lists_the_wrong_shapes(tiny):
    diffusers, videounet, key_map = tiny
    full = meta(fx.diffusers_layout(fx.diffusers_config()))
    rejected(full, "keys with the wrong shape (", "expected [64, 8, 3, 3] found [320, 8, 3, 3]", " more)",
             key_map=key_map, expected=videounet)

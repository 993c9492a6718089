"""Format detection, rejection of the wrong files with messages that say what was expected and found, and loading."""

import pytest
import torch

from animatelcm.motion_models.checkpoint import (MotionModelFormat, MotionModelFormatError, detect_format,
                                                 load_motion_model, normalize_state_dict, read_state_dict)
from animatelcm.devkit import motion_modules as mm

# fixture kind -> what detection reports (v2 and v3 have the same layout and are reported together)
EXPECTED = {
    "animatelcm_t2v": MotionModelFormat("animatelcm_t2v", mm.TINY_WIDTH, None, True, False, 64),
    "animatelcm_i2v": MotionModelFormat("animatelcm_i2v", mm.TINY_WIDTH, None, True, True, 64),
    "animatediff_v1": MotionModelFormat("animatediff_v1", mm.TINY_WIDTH, 24, False, False, 24),
    "animatediff_v2": MotionModelFormat("animatediff_v2_v3", mm.TINY_WIDTH, 32, True, False, 32),
    "animatediff_v3": MotionModelFormat("animatediff_v2_v3", mm.TINY_WIDTH, 32, True, False, 32),
    "animatediff_lightning": MotionModelFormat("animatediff_v2_v3", mm.TINY_WIDTH, 32, True, False, 32),
}
T2V = "down_blocks.0.motion_modules.0.temporal_transformer."


def meta_state_dict(layout):
    """Keys and shapes only: detection never reads values."""
    return {k: torch.empty(shape, device="meta") for k, shape in layout.items()}


def tiny(kind="animatelcm_t2v"):
    return mm.motion_module_state_dict(kind, mm.TINY_WIDTH)


def rejected(state_dict, *fragments, name="bad.safetensors"):
    with pytest.raises(MotionModelFormatError) as error:
        detect_format(state_dict, name)
    message = str(error.value)
    assert message.startswith(f"{name}: ")
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("kind", sorted(mm.KINDS))
@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_every_fixture_file_is_detected(kind, fmt, dtype):
    path = mm.motion_module_file(kind, mm.TINY_WIDTH, fmt=fmt, dtype=dtype)
    assert detect_format(read_state_dict(path), path.name) == EXPECTED[kind]


@pytest.mark.parametrize("kind", sorted(mm.KINDS))
def test_module_prefix_is_stripped(kind):
    state_dict = mm.motion_module_state_dict(kind, mm.TINY_WIDTH, key_prefix="module.")
    assert all(k.startswith("module.") for k in state_dict)
    assert detect_format(state_dict, "prefixed.ckpt") == EXPECTED[kind]
    assert normalize_state_dict(state_dict).keys() == tiny(kind).keys()


def test_nested_state_dict_and_counters_are_unwrapped(tmp_path):
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": tiny(), "global_step": 1000}, path)
    state_dict = normalize_state_dict(read_state_dict(path))
    assert state_dict.keys() == tiny().keys()
    assert detect_format({"state_dict": tiny(), "epoch": 3}, path.name) == EXPECTED["animatelcm_t2v"]


@pytest.mark.parametrize("kind", ["animatelcm_t2v", "animatediff_v1", "animatediff_v2"])
def test_full_width_files_are_detected(kind):
    fmt = detect_format(meta_state_dict(mm.motion_module_layout(kind, mm.FULL_WIDTH)), "full.ckpt")
    assert fmt.width == mm.FULL_WIDTH
    assert (fmt.pe_length, fmt.has_mid_block) == mm.KINDS[kind][:2]


def test_other_stored_encoding_lengths_load_as_generic_animatediff():
    state_dict = {k: torch.zeros(1, 16, v.shape[2]) if k.endswith("pos_encoder.pe") else v
                  for k, v in tiny("animatediff_v2").items()}
    loaded = load_motion_model(state_dict, "finetune.ckpt")
    assert loaded.format == MotionModelFormat("animatediff", mm.TINY_WIDTH, 16, True, False, 16)
    assert loaded.model.max_frames == 16


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_load_copies_every_weight(fmt, dtype):
    path = mm.motion_module_file("animatediff_v2", mm.TINY_WIDTH, fmt=fmt, dtype=dtype)
    state_dict = read_state_dict(path)
    loaded = load_motion_model(state_dict, path.name)
    assert loaded.format == EXPECTED["animatediff_v2"] and loaded.model.image_encoder is None
    weights = loaded.model.state_dict()
    assert weights.keys() == state_dict.keys()  # stored position encodings included
    assert all(v.dtype == torch.float32 and torch.equal(v, state_dict[k].float()) for k, v in weights.items())


def test_load_casts_to_the_requested_dtype():
    model = load_motion_model(tiny(), "t2v.ckpt", dtype=torch.float16).model
    assert all(p.dtype == torch.float16 for p in model.parameters())


def test_i2v_image_encoder_weights_load_into_the_model():
    state_dict = tiny("animatelcm_i2v")
    loaded = load_motion_model(state_dict, "AnimateLCM_sd15_i2v.ckpt")
    encoder = {k.removeprefix("img_encoder."): v for k, v in state_dict.items() if k.startswith("img_encoder.")}
    weights = loaded.model.image_encoder.state_dict()
    assert weights.keys() == encoder.keys() and "conv_in.weight" in encoder
    assert all(torch.equal(weights[k], v) for k, v in encoder.items())
    assert loaded.model.state_dict().keys() == state_dict.keys()
    assert len(loaded.model.in_unet_order()) == 21  # the adapter is not one of the temporal modules


def test_empty_file_is_rejected():
    rejected({}, "expected a motion module, found no tensors")


def test_lora_is_rejected():
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320, 1, 1),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4, 1, 1),
            "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0)}
    rejected(lora, "this is a LoRA", "lora_unet_down_blocks_0_attentions_0_proj_in.alpha", "models/loras")
    motion_lora = {f"{T2V}transformer_blocks.0.attention_blocks.0.processor.to_q_lora.down.weight": torch.zeros(4, 32)}
    rejected(motion_lora, "this is a LoRA", "to_q_lora.down.weight")


def test_full_checkpoint_is_rejected():
    checkpoint = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
                  "first_stage_model.decoder.conv_in.weight": torch.zeros(512, 4, 3, 3)}
    rejected(checkpoint, "full Stable Diffusion checkpoint", "model.diffusion_model.input_blocks.0.0.weight",
             "Load Checkpoint")


def test_sdxl_motion_module_is_rejected():
    sdxl = (320, 640, 1280)
    layout = {}
    for prefix, c in mm.module_prefixes(sdxl, mid_block=True):
        layout.update(mm.temporal_transformer_layout(prefix, c, pe_length=32))
    rejected(meta_state_dict(layout), "expected an SD1.5 motion module with 4 down levels (channels (320, 640, 1280, "
             "1280))", "found 3 down levels with channels (320, 640, 1280)", "SDXL")


def test_hotshot_xl_is_rejected():
    hotshot = {"down_blocks.0.temporal_attentions.0.transformer_blocks.0.attention_blocks.0.to_q.weight":
               torch.zeros(320, 320)}
    rejected(hotshot, "HotshotXL", "down_blocks.0.temporal_attentions.0", "expected an SD1.5 motion module")


def test_unrelated_file_is_rejected():
    rejected({"encoder.conv_in.weight": torch.zeros(4), "decoder.conv_out.weight": torch.zeros(4)},
             "expected motion-module keys such as down_blocks.0.motion_modules.0.temporal_transformer.norm.weight",
             "found decoder.conv_out.weight, encoder.conv_in.weight")


def test_missing_keys_are_listed():
    state_dict = tiny()
    del state_dict[f"{T2V}transformer_blocks.0.ff_norm.bias"]
    del state_dict["mid_block.motion_modules.0.temporal_transformer.proj_out.weight"]
    rejected(state_dict, "not a valid animatelcm_t2v motion module with channels (32, 64, 128, 128)",
             "2 missing keys", f"{T2V}transformer_blocks.0.ff_norm.bias",
             "mid_block.motion_modules.0.temporal_transformer.proj_out.weight")


def test_missing_level_input_is_named():
    state_dict = tiny()
    del state_dict["down_blocks.2.motion_modules.0.temporal_transformer.proj_in.weight"]
    rejected(state_dict, "missing keys: down_blocks.2.motion_modules.0.temporal_transformer.proj_in.weight")


def test_wrong_shapes_are_listed():
    state_dict = tiny()
    state_dict[f"{T2V}transformer_blocks.0.ff.net.2.weight"] = torch.zeros(32, 64)
    rejected(state_dict, "1 keys with the wrong shape",
             f"{T2V}transformer_blocks.0.ff.net.2.weight expected [32, 128] found [32, 64]")


def test_unexpected_keys_are_listed():
    state_dict = tiny()
    state_dict[f"{T2V}transformer_blocks.1.ff_norm.weight"] = torch.zeros(32)
    rejected(state_dict, "1 unexpected keys", f"{T2V}transformer_blocks.1.ff_norm.weight")


def test_mixed_position_encoding_lengths_are_rejected():
    state_dict = tiny("animatediff_v2")
    state_dict[f"{T2V}transformer_blocks.0.attention_blocks.0.pos_encoder.pe"] = torch.zeros(1, 24, 32)
    rejected(state_dict, "expected one position-encoding length in all modules, found [24, 32]")


def test_channels_must_suit_the_group_norm():
    layout = {}
    for prefix, c in mm.module_prefixes((48, 64, 128, 128)):
        layout.update(mm.temporal_transformer_layout(prefix, c, pe_length=None))
    rejected(meta_state_dict(layout), "expected channels that are multiples of 32, found (48, 64, 128, 128)")


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_truncated_file_is_named(tmp_path, fmt):
    data = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, fmt=fmt).read_bytes()
    path = tmp_path / f"AnimateLCM_sd15_t2v.{fmt}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MotionModelFormatError, match=rf"^AnimateLCM_sd15_t2v\.{fmt}: cannot read the file: it is "
                                                     "corrupt, incomplete"):
        read_state_dict(path)


def test_a_checkpoint_that_carries_code_is_refused_as_unsafe_without_running_it(tmp_path):
    from animatelcm.devkit.weights import code_carrying_checkpoint

    path = code_carrying_checkpoint(tmp_path / "mm_sd_v15_v2.ckpt", flag := tmp_path / "ran")
    with pytest.raises(MotionModelFormatError) as refused:
        read_state_dict(path)
    assert str(refused.value).startswith("mm_sd_v15_v2.ckpt: the file holds pickled Python objects besides tensors "
                                         "(it asks for io.open)")
    assert "may be unsafe. They were not run" in str(refused.value) and "download it again" not in str(refused.value)
    assert not flag.exists()


def test_missing_file_is_not_called_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "absent.ckpt")

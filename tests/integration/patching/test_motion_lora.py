"""Motion LoRAs through the model patcher: the merged weights are W + strength · up @ down while the motion model is
loaded, the forward equals a motion model built from weights merged by hand, and nothing else changes."""

import pytest
import torch

import comfy.model_management

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.lora import lora_file
from animatelcm.devkit.weights import materialize
from animatelcm.motion_models.checkpoint import load_motion_model
from animatelcm.motion_models.motion_lora import MotionLoRAError
from animatelcm.patching.motion_injection import load_motion_model_file
from animatelcm.patching.motion_lora import load_motion_lora_file, with_motion_loras

WIDTH = mm.TINY_WIDTH


@pytest.fixture(scope="module")
def motion():
    path = mm.motion_module_file("animatelcm_t2v", WIDTH, dtype=torch.float32)
    return load_motion_model_file(str(path), path.name)


def lora_path(style, fmt="safetensors"):
    return mm.motion_lora_file(style, WIDTH, fmt=fmt)


def merged_by_hand(loras):
    """The motion module's file weights plus strength · up @ down, the LoRA keys renamed as written in the release
    notes: `X.processor.to_q_lora` -> `X.to_q`, `X.processor.to_out_lora` -> `X.to_out.0`, and MotionDirector's
    `X.processor.<last>_lora` -> `X.<last>`."""
    state_dict = mm.motion_module_state_dict("animatelcm_t2v", WIDTH)
    for style, strength in loras:
        layout = mm.motion_lora_layout(style, WIDTH)
        weights = materialize(layout, seed=0)
        for down_key in [k for k in layout if k.endswith(".down.weight")]:
            stem = down_key.removesuffix("_lora.down.weight")
            path, last = stem.split(".processor.")
            module = f"{path}.{last}" + (".0" if last == "to_out" else "")
            up = weights[down_key.replace(".down.", ".up.")].half().float()
            down = weights[down_key].half().float()  # the file holds them in fp16
            state_dict[f"{module}.weight"] = state_dict[f"{module}.weight"] + strength * (up @ down)
    return state_dict


def loaded_weights(patcher):
    comfy.model_management.load_models_gpu([patcher])
    return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}


@pytest.mark.parametrize("loras", [[("animatediff", 0.7)], [("motiondirector", 1.0)],
                                   [("animatediff", 0.5), ("motiondirector", -0.25)]],
                         ids=["animatediff", "motiondirector", "chained"])
def test_the_merged_motion_model_equals_one_built_from_weights_merged_by_hand(motion, loras):
    chain = None
    for style, strength in loras:
        chain = load_motion_lora_file(str(lora_path(style)), f"{style}.safetensors", strength, chain)
    original = {k: v.clone() for k, v in motion.loaded.model.state_dict().items()}
    patched = with_motion_loras(motion, chain)
    assert patched.loaded is motion.loaded and patched.patcher is not motion.patcher and not motion.patcher.patches
    weights = loaded_weights(patched.patcher)
    expected = merged_by_hand(loras)
    changed = [k for k in weights if not torch.equal(weights[k], original[k])]
    assert changed and all(k.endswith(".weight") for k in changed)
    for key, value in weights.items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)
    reference = load_motion_model(expected, "merged by hand").model
    x = torch.randn(2 * 16, WIDTH[0], 4, 4, generator=torch.Generator().manual_seed(0))
    [(_, ours)], [(_, theirs)] = list(patched.loaded.model.in_unet_order())[:1], list(reference.in_unet_order())[:1]
    with torch.no_grad():
        torch.testing.assert_close(ours(x, 16), theirs(x, 16), rtol=1e-4, atol=1e-5)
    comfy.model_management.unload_all_models()
    assert all(torch.equal(v, original[k]) for k, v in motion.loaded.model.state_dict().items())  # restored


def test_a_ckpt_motion_lora_loads_weights_only_like_its_safetensors_twin(motion):
    ckpt = load_motion_lora_file(str(lora_path("animatediff", "ckpt")), "v2_lora_ZoomIn.ckpt", 1.0)
    safetensors = load_motion_lora_file(str(lora_path("animatediff")), "v2_lora_ZoomIn.safetensors", 1.0)
    assert ckpt[0].state_dict.keys() == safetensors[0].state_dict.keys()
    assert all(torch.equal(ckpt[0].state_dict[k], v) for k, v in safetensors[0].state_dict.items())


def test_an_image_lora_or_a_damaged_file_is_refused_when_loaded(tmp_path):
    with pytest.raises(MotionLoRAError, match="a LoRA for the image model"):
        load_motion_lora_file(str(lora_file(model_channels=32)), "detail_tweaker.safetensors", 1.0)
    damaged = tmp_path / "v2_lora_ZoomIn.ckpt"
    damaged.write_bytes(lora_path("animatediff", "ckpt").read_bytes()[:1000])
    with pytest.raises(ValueError, match="v2_lora_ZoomIn.ckpt: cannot read the file"):
        load_motion_lora_file(str(damaged), damaged.name, 1.0)


def test_a_lora_for_another_width_is_refused_when_applied(motion):
    wide = mm.motion_lora_file("animatediff", (64, 128, 256, 256))
    chain = load_motion_lora_file(str(wide), "sdxl_like.safetensors", 1.0)
    with pytest.raises(MotionLoRAError, match="another width"):
        with_motion_loras(motion, chain)


def test_another_packs_motion_lora_chain_is_refused_with_the_node_to_use(motion):
    from animatelcm.devkit.comfy import tiny_sd15_model
    from animatelcm.nodes.motion_model import ApplyMotionModel

    class OtherPacksLoraList:  # e.g. AnimateDiff-Evolved's MOTION_LORA: not a list of the pack's entries
        loras = [("v2_lora_ZoomIn.ckpt", 1.0)]

    for foreign in (OtherPacksLoraList(), [("v2_lora_ZoomIn.ckpt", 1.0)]):
        with pytest.raises(ValueError, match="connect AnimateLCM Load Motion LoRA"):
            ApplyMotionModel.execute(tiny_sd15_model(), motion, 1.0, "auto", foreign)

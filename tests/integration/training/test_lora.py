"""The stage-1 LoRA against ComfyUI's own LoRA loading: the kohya file lands on exactly the trained layers and gives
the same UNet output; the update, its scale and its EMA are what the training needs."""

import pytest
import torch

import comfy.lora
import comfy.model_management
import comfy.sd
import comfy.supported_models

from animatelcm.devkit.comfy import model_patcher
from animatelcm.training.lora import SpatialLoRA, rank_of
from animatelcm.training.models import TINY_UNET, new_unet

CONFIG = dict(TINY_UNET, image_size=16)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 16, 16, generator=g), torch.tensor([999.0, 250.0]), torch.randn(2, 8, 64, generator=g)


def unet_with_lora(targets="transformers", seed=0):
    torch.manual_seed(seed)
    unet = new_unet(CONFIG)
    base = {k: v.clone() for k, v in unet.state_dict().items()}
    lora = SpatialLoRA(unet, CONFIG, rank=4, alpha=2.0, targets=targets)
    return unet, base, lora


def randomise(lora):
    with torch.no_grad():
        for update in lora.updates.values():
            update.up.normal_(0, 0.05)


def test_a_new_lora_changes_nothing():
    unet, base, lora = unet_with_lora()
    x, t, c = inputs()
    with lora.applied(1.0):
        out = unet(x, t, c)
    plain = new_unet(CONFIG)
    plain.load_state_dict(base)
    assert torch.equal(out, plain(x, t, c))


def test_the_update_is_up_down_times_alpha_over_rank_at_the_given_scale():
    unet, base, lora = unet_with_lora()
    randomise(lora)
    layer = unet.input_blocks[4][1].transformer_blocks[0].attn2.to_k
    update = layer.parametrizations.weight[0]
    original = layer.parametrizations.weight.original
    with lora.applied(0.5):
        expected = original + 0.5 * (2.0 / 4) * update.up @ update.down
        torch.testing.assert_close(layer.weight, expected, rtol=0, atol=1e-7)
    with lora.applied(0.0):
        assert torch.equal(layer.weight, original)


@pytest.mark.parametrize("targets", ["transformers", "all"])
def test_comfyui_loads_the_kohya_file_onto_the_trained_layers_with_the_same_output(targets):
    unet, base, lora = unet_with_lora(targets)
    randomise(lora)
    weights = lora.state_dict()
    assert all(k.startswith("lora_unet_") for k in weights)

    model = model_patcher(comfy.supported_models.SD15(dict(CONFIG)), base)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    patches = comfy.lora.load_lora(weights, key_map, log_missing=True)
    assert len(patches) == len(lora.updates)  # every update found its layer: no key left over

    patched, _ = comfy.sd.load_lora_for_models(model, None, weights, 1.0, 0)
    comfy.model_management.load_models_gpu([patched])
    x, t, c = inputs(1)
    with torch.no_grad(), lora.applied(1.0):
        torch.testing.assert_close(patched.model.diffusion_model(x, t, context=c), unet(x, t, c), rtol=1e-4, atol=1e-5)
    with torch.no_grad(), lora.applied(0.0):
        assert not torch.allclose(patched.model.diffusion_model(x, t, context=c), unet(x, t, c), atol=1e-4)


def test_the_file_loads_back_into_a_fresh_lora():
    unet, base, lora = unet_with_lora(seed=0)
    randomise(lora)
    other, _, fresh = unet_with_lora(seed=0)
    fresh.load_state_dict(lora.state_dict())
    x, t, c = inputs()
    with torch.no_grad(), lora.applied(1.0), fresh.applied(1.0):
        torch.testing.assert_close(other(x, t, c), unet(x, t, c), rtol=0, atol=1e-6)
    with fresh.applied(1.0, ema=True), torch.no_grad():  # the EMA copy starts as the loaded factors
        torch.testing.assert_close(other(x, t, c), unet(x, t, c), rtol=0, atol=1e-6)


def test_a_lora_of_another_rank_is_refused_with_the_reason():
    _, _, lora = unet_with_lora()
    other = new_unet(CONFIG)
    wrong = SpatialLoRA(other, CONFIG, rank=4, targets="all")
    with pytest.raises(ValueError, match="does not fit this UNet.*same base model, rank and targets"):
        wrong.load_state_dict(lora.state_dict())


def test_the_rank_is_read_from_the_file_and_a_file_without_one_rank_is_refused():
    _, _, lora = unet_with_lora()
    weights = lora.state_dict()
    assert rank_of(weights) == 4
    with pytest.raises(ValueError, match="x.safetensors has no lora_down weights"):
        rank_of({k: v for k, v in weights.items() if "lora_down" not in k}, "x.safetensors")
    first = next(k for k in weights if k.endswith(".lora_down.weight"))
    with pytest.raises(ValueError, match=r"ranks \[2, 4\]"):
        rank_of({**weights, first: weights[first][:2]})


def test_the_ema_factors_follow_the_online_ones():
    _, _, lora = unet_with_lora()
    update = next(iter(lora.updates.values()))
    before = update.ema_up.clone(), update.ema_down.clone()
    randomise(lora)
    lora.update_ema(0.9)
    torch.testing.assert_close(update.ema_up, 0.9 * before[0] + 0.1 * update.up.detach(), rtol=0, atol=1e-7)
    torch.testing.assert_close(update.ema_down, before[1], rtol=0, atol=1e-7)  # down did not move

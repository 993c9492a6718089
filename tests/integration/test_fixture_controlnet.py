"""The generated ControlNet loads through ComfyUI's stock loader as an SD1.5 ControlNet and steers the fixture UNet."""

import logging

import pytest
import torch
from safetensors.torch import load_file

import comfy.controlnet
import comfy.model_detection
import comfy.sample
import comfy.supported_models
import nodes  # ComfyUI's core nodes (the pack is imported as `animatelcm`, so this name is ComfyUI's)

from animatelcm.devkit.controlnet import PTH_PREFIX, controlnet_file

FRAMES = 2


@pytest.fixture(scope="module")
def controlnet_path():
    return controlnet_file()


def test_stock_loader_loads_every_key_as_sd15_controlnet(controlnet_path, caplog):
    with caplog.at_level(logging.DEBUG):
        control = comfy.controlnet.load_controlnet(str(controlnet_path))
    # load_controlnet warns "missing controlnet keys" and logs "unexpected controlnet keys" at DEBUG level only.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not [r.getMessage() for r in caplog.records if "unexpected controlnet keys" in r.getMessage()]
    assert type(control) is comfy.controlnet.ControlNet

    on_disk = load_file(controlnet_path)
    assert all(k.startswith(PTH_PREFIX) for k in on_disk)
    detected = comfy.model_detection.model_config_from_unet(on_disk, PTH_PREFIX)
    assert type(detected) is comfy.supported_models.SD15
    model = control.control_model
    assert model.model_channels == 320 and model.input_hint_block[0].in_channels == 3
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for t in on_disk.values())
    for key in ("zero_convs.11.0.weight", "middle_block_out.0.weight", "input_hint_block.14.weight"):
        torch.testing.assert_close(model.state_dict()[key].float(), on_disk[PTH_PREFIX + key].float(), rtol=0, atol=0)


def _sample(model, positive, negative):
    """One step, cfg > 1: cond and uncond run as one batch of 2 x FRAMES, as they do in a video sampler."""
    latent = torch.zeros(FRAMES, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed=1)
    return comfy.sample.sample(model, noise, 1, 2.0, "euler", "simple", positive, negative, latent,
                               disable_pbar=True, seed=1)


def test_controlnet_changes_the_sample_and_strength_zero_does_not(sd15, controlnet_path, caplog):
    model = sd15[0]
    gen = torch.manual_seed(3)
    positive = [[torch.randn(1, 77, 768, generator=gen), {}]]
    negative = [[torch.randn(1, 77, 768, generator=gen), {}]]
    hint = torch.rand(FRAMES, 64, 64, 3, generator=gen)  # one hint image per frame
    control = comfy.controlnet.load_controlnet(str(controlnet_path))

    with caplog.at_level(logging.WARNING):  # e.g. "control could not be applied" on a shape mismatch
        plain = _sample(model, positive, negative)
        controlled = _sample(model, *nodes.ControlNetApplyAdvanced().apply_controlnet(
            positive, negative, control, hint, 1.0, 0.0, 1.0))
        # The core node returns the conditioning untouched at strength 0; set the hint as it does, so the
        # ControlNet really runs and its residuals are scaled by 0.
        zero = control.copy().set_cond_hint(hint.movedim(-1, 1), 0.0, (0.0, 1.0))
        with_zero = [[[t[0], {**t[1], "control": zero, "control_apply_to_uncond": False}] for t in c]
                     for c in (positive, negative)]
        zero_strength = _sample(model, *with_zero)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

    assert torch.isfinite(controlled).all()
    assert (controlled - plain).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every frame is steered
    assert (zero_strength - plain).abs().max() == 0.0

"""The generated files load through ComfyUI's own loaders exactly as real ones do, and sample finitely."""

import logging

import torch
from safetensors.torch import load_file

import comfy.sample
import comfy.sd
import comfy.supported_models

from animatelcm.devkit import lora, sd15_checkpoint as sd
from animatelcm.devkit.comfy import tiny_sd15_model


def test_stock_loader_detects_sd15_and_loads_every_key(sd15_checkpoint_path, caplog):
    with caplog.at_level(logging.DEBUG):
        model, clip, vae = comfy.sd.load_checkpoint_guess_config(str(sd15_checkpoint_path), output_vae=True,
                                                                 output_clip=True)[:3]
    # ComfyUI warns on missing/unexpected UNet, VAE and text-encoder keys and logs keys nobody consumed.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not [r.getMessage() for r in caplog.records if r.getMessage().startswith("left over keys")]
    assert type(model.model.model_config) is comfy.supported_models.SD15
    on_disk = load_file(sd15_checkpoint_path)
    torch.testing.assert_close(model.model.diffusion_model.out[2].weight.float(),
                               on_disk[sd.UNET_PREFIX + "out.2.weight"].float(), rtol=0, atol=0)


def test_text_encoder_and_vae_give_finite_outputs(sd15):
    _, clip, vae = sd15
    cond = clip.encode_from_tokens(clip.tokenize("a cat walking"))
    assert cond.shape == (1, 77, 768) and torch.isfinite(cond).all()
    images = vae.decode(torch.randn(2, 4, 8, 8, generator=torch.manual_seed(0)))
    assert images.shape == (2, 64, 64, 3) and torch.isfinite(images).all()


def test_kohya_lora_patches_every_key(sd15, caplog):
    model, clip, _ = sd15
    with caplog.at_level(logging.WARNING):
        patched, _ = comfy.sd.load_lora_for_models(model, clip, load_file(lora.lora_file()), 1.0, 1.0)
    assert [r.getMessage() for r in caplog.records if "lora key not loaded" in r.getMessage()] == []
    assert len(patched.patches) == 16 * 12


def test_tiny_model_samples_16_frames_finitely_over_4_steps():
    model = tiny_sd15_model()
    frames = 16
    latent = torch.zeros(frames, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed=1)
    context = torch.randn(1, 77, 768, generator=torch.manual_seed(2))
    positive = [[context, {}]]
    out = comfy.sample.sample(model, noise, 4, 1.0, "euler", "simple", positive, positive, latent,
                              disable_pbar=True, seed=1)
    assert out.shape == latent.shape
    assert torch.isfinite(out).all() and out.abs().max() < 1e3

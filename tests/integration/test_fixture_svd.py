"""The generated SVD-XT checkpoint loads through ComfyUI's stock loader as SVD, and runs as the SVD workflow uses it."""

import logging

import pytest
import torch
from safetensors import safe_open

import comfy.clip_model
import comfy.ldm.models.autoencoder
import comfy.ldm.modules.diffusionmodules.model
import comfy.ldm.modules.temporal_ae
import comfy.model_base
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.supported_models
from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning

from animatelcm.devkit import svd_checkpoint as svd

FRAMES = 4  # few: the test is about the layout and the path, and full-size SVD-xt is slow on CPU


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def svd_path():
    return svd.svd_checkpoint_file()


@pytest.fixture(scope="module")
def loaded(svd_path):
    """(MODEL, CLIP_VISION, VAE) as ImageOnlyCheckpointLoader loads them, and ComfyUI's log of the load at DEBUG."""
    root, handler = logging.getLogger(), _Records()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        model, _, vae, clip_vision = comfy.sd.load_checkpoint_guess_config(
            str(svd_path), output_vae=True, output_clip=False, output_clipvision=True)
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
    return model, clip_vision, vae, handler.records


def _file_counts(path):
    """Parameter count per part of the file, read from the header only."""
    counts = {svd.UNET_PREFIX: 0, svd.CLIP_VISION_PREFIX: 0, svd.VAE_PREFIX: 0, "other": 0}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            n = torch.Size(f.get_slice(key).get_shape()).numel()
            counts[next((p for p in counts if key.startswith(p)), "other")] += n
    return counts


def _params(module):
    return sum(p.numel() for p in module.parameters())


def test_file_holds_the_layout_in_fp16(svd_path):
    layout = svd.svd_checkpoint_layout()
    with safe_open(str(svd_path), framework="pt") as f:
        assert set(f.keys()) == set(layout)
        for key in ("model.diffusion_model.input_blocks.1.0.time_stack.in_layers.2.weight",
                    "model.diffusion_model.middle_block.1.time_mixer.mix_factor",
                    svd.CLIP_VISION_PREFIX + "proj", svd.VAE_PREFIX + "decoder.conv_out.time_mix_conv.weight"):
            tensor = f.get_tensor(key)
            assert tensor.dtype == torch.float16 and tuple(tensor.shape) == layout[key]
            assert torch.equal(tensor, svd.svd_tensor(key, layout[key]))


def test_stock_loader_loads_every_key_as_svd(svd_path, loaded):
    model, clip_vision, vae, records = loaded
    messages = [r.getMessage() for r in records]
    # The loader warns on missing/unexpected UNet keys, missing CLIP vision and VAE keys; logs left-over VAE keys
    # and the checkpoint keys nobody consumed at DEBUG.
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    assert not [m for m in messages if m.startswith(("left over keys", "Leftover VAE keys"))]
    assert "adm 768" in messages  # DEBUG records were captured, so the absence above means something

    assert type(model.model) is comfy.model_base.SVD_img2vid
    assert type(model.model.model_config) is comfy.supported_models.SVD_img2vid
    assert model.model.model_type == comfy.model_base.ModelType.V_PREDICTION_EDM
    config = model.model.model_config.unet_config
    assert {k: config[k] for k in ("model_channels", "in_channels", "out_channels", "context_dim", "adm_in_channels",
                                   "channel_mult", "num_res_blocks", "transformer_depth", "use_linear_in_transformer",
                                   "use_temporal_resblock", "use_temporal_attention",
                                   "disable_temporal_crossattention", "video_kernel_size")} == {
        "model_channels": 320, "in_channels": 8, "out_channels": 4, "context_dim": 1024, "adm_in_channels": 768,
        "channel_mult": [1, 2, 4, 4], "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "use_linear_in_transformer": True, "use_temporal_resblock": True, "use_temporal_attention": True,
        "disable_temporal_crossattention": False, "video_kernel_size": [3, 1, 1]}
    assert float(model.model.model_sampling.sigma_max) == pytest.approx(700.0)

    vision = clip_vision.model
    assert type(vision) is comfy.clip_model.CLIPVisionModelProjection
    assert len(vision.vision_model.encoder.layers) == 32
    assert vision.visual_projection.weight.shape == (1024, 1280)  # ViT-H/14: 1024-d image embeds

    autoencoder = vae.first_stage_model
    assert type(autoencoder) is comfy.ldm.models.autoencoder.AutoencodingEngine
    assert type(autoencoder.encoder) is comfy.ldm.modules.diffusionmodules.model.Encoder
    assert type(autoencoder.decoder) is comfy.ldm.modules.temporal_ae.VideoDecoder
    assert isinstance(autoencoder.decoder.conv_out, comfy.ldm.modules.temporal_ae.AE3DConv)  # conv + 3x1x1 time mix
    assert isinstance(autoencoder.decoder.mid.block_1, comfy.ldm.modules.temporal_ae.VideoResBlock)

    counts = _file_counts(svd_path)
    assert counts["other"] == 0
    assert _params(model.model.diffusion_model) == counts[svd.UNET_PREFIX]
    assert _params(vision) == counts[svd.CLIP_VISION_PREFIX]
    assert _params(autoencoder) == counts[svd.VAE_PREFIX]

    # Values arrive unchanged (ComfyUI transposes OpenCLIP's proj and splits in_proj into q, k, v).
    layout = svd.svd_checkpoint_layout()
    unet = model.model.diffusion_model.state_dict()
    for key in ("out.2.weight", "input_blocks.4.1.time_stack.0.attn2.to_k.weight",
                "middle_block.0.time_mixer.mix_factor"):
        expected = svd.svd_tensor(svd.UNET_PREFIX + key, layout[svd.UNET_PREFIX + key]).float()
        torch.testing.assert_close(unet[key].float(), expected, rtol=0, atol=0)
    assert float(unet["middle_block.0.time_mixer.mix_factor"]) == svd.MIX_FACTOR
    proj = svd.svd_tensor(svd.CLIP_VISION_PREFIX + "proj", layout[svd.CLIP_VISION_PREFIX + "proj"])
    torch.testing.assert_close(vision.visual_projection.weight.float(), proj.float().t(), rtol=0, atol=0)
    in_proj = svd.svd_tensor(svd.CLIP_VISION_PREFIX + "transformer.resblocks.31.attn.in_proj_weight", (3840, 1280))
    torch.testing.assert_close(vision.vision_model.encoder.layers[31].self_attn.v_proj.weight.float(),
                               in_proj[2560:].float(), rtol=0, atol=0)
    key = "decoder.conv_out.time_mix_conv.weight"
    expected = svd.svd_tensor(svd.VAE_PREFIX + key, layout[svd.VAE_PREFIX + key]).float()
    torch.testing.assert_close(autoencoder.state_dict()[key].float(), expected, rtol=0, atol=0)


def test_svd_conditioning_one_lcm_step_and_video_decode_are_finite(loaded):
    model, clip_vision, vae, _ = loaded
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        _condition_sample_decode(model, clip_vision, vae)


def _condition_sample_decode(model, clip_vision, vae):
    torch.manual_seed(0)  # the node's augmentation noise comes from the global generator
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    positive, negative, latent = SVD_img2vid_Conditioning().encode(
        clip_vision, image, vae, width=64, height=64, video_frames=FRAMES, motion_bucket_id=127, fps=7,
        augmentation_level=0.02)
    embeds, extra = positive[0]
    assert embeds.shape == (1, 1, 1024) and torch.isfinite(embeds).all() and embeds.abs().max() > 0
    assert extra["concat_latent_image"].shape == (1, 4, 8, 8) and torch.isfinite(extra["concat_latent_image"]).all()
    assert latent["samples"].shape == (FRAMES, 4, 8, 8)

    # AnimateLCM-SVD's one-step schedule: sigmas 700, 0 with the lcm update; cfg 1 runs the cond pass only.
    noise = comfy.sample.prepare_noise(latent["samples"], seed=1)
    out = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("lcm"),
                                     torch.tensor([700.0, 0.0]), positive, negative, latent["samples"],
                                     disable_pbar=True, seed=1)
    assert out.shape == (FRAMES, 4, 8, 8)
    assert torch.isfinite(out).all() and out.abs().max() < 50  # about 2.4 here (VAE units)
    assert out.std() > 1e-2
    assert (out[1:] - out[:-1]).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # frames differ

    frames = vae.decode(out)
    assert frames.shape == (FRAMES, 64, 64, 3)
    assert torch.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    assert frames.std() > 1e-3

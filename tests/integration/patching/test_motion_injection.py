"""The motion model inside ComfyUI's model patcher: placement, isolation, unloading, frame limits, model sampling."""

import math

import pytest
import torch

import comfy.model_management
import comfy.sample

from animatelcm.motion_models import MotionModelFormatError
from animatelcm.patching.motion_injection import MotionModuleLayer, attach_motion_model, load_motion_model_file
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model

FRAMES = 8


def motion(kind, fmt="safetensors", dtype=torch.float32, seed=0):
    path = mm.motion_module_file(kind, mm.TINY_WIDTH, fmt=fmt, dtype=dtype, seed=seed)
    return load_motion_model_file(str(path), path.name)


@pytest.fixture(scope="module")
def base_model():
    return tiny_sd15_model()


def sample(model, frames=FRAMES, seed=1, steps=2, noise=None):
    latent = torch.zeros(frames, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed) if noise is None else noise
    context = torch.randn(1, 77, 768, generator=torch.manual_seed(2))
    cond = [[context, {}]]
    return comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", cond, cond, latent,
                               disable_pbar=True, seed=seed)


def unet_structure(model):
    unet = model.model.diffusion_model
    return [[type(m).__name__ for m in block] for block in (*unet.input_blocks, unet.middle_block, *unet.output_blocks)]


def motion_layers(model):
    return [m for m in model.model.diffusion_model.modules() if isinstance(m, MotionModuleLayer)]


def test_every_fixture_format_loads_through_comfy_file_reading():
    for kind in mm.KINDS:
        for fmt in ("ckpt", "safetensors"):
            for dtype in (torch.float16, torch.float32):
                loaded = motion(kind, fmt, dtype).loaded
                assert loaded.format.width == mm.TINY_WIDTH
                assert loaded.format.has_image_encoder == (kind == "animatelcm_i2v")


def test_a_damaged_file_is_rejected_with_its_name(tmp_path):
    damaged = tmp_path / "AnimateLCM_sd15_t2v.safetensors"
    damaged.write_bytes(mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH).read_bytes()[:5000])
    with pytest.raises(MotionModelFormatError, match=r"^AnimateLCM_sd15_t2v.safetensors: cannot read the file"):
        load_motion_model_file(str(damaged), damaged.name)


def test_apply_leaves_the_input_model_untouched_and_unloading_restores_the_unet(base_model):
    structure = unet_structure(base_model)
    options = repr(base_model.model_options)
    before = sample(base_model)

    animated = attach_motion_model(base_model, motion("animatelcm_t2v"), 1.0)
    assert repr(base_model.model_options) == options
    assert base_model.object_patches == {} and base_model.injections == {} and base_model.additional_models == {}
    moving = sample(animated)
    assert not torch.equal(moving, before)
    assert len(motion_layers(animated)) == 21  # still loaded, so still injected

    comfy.model_management.unload_all_models()
    assert unet_structure(base_model) == structure and motion_layers(base_model) == []
    assert torch.equal(sample(base_model), before)


def test_layers_sit_where_the_original_puts_them(base_model):
    animated = attach_motion_model(base_model, motion("animatelcm_t2v"), 1.0)
    sample(animated, steps=1)
    unet = animated.model.diffusion_model
    with_layer = [i for i, block in enumerate(unet.input_blocks) if isinstance(block[-1], MotionModuleLayer)]
    assert with_layer == [1, 2, 4, 5, 7, 8, 10, 11]
    assert [type(m).__name__ for m in unet.middle_block] == ["ResBlock", "SpatialTransformer", "MotionModuleLayer",
                                                             "ResBlock"]
    assert [type(m).__name__ for m in unet.output_blocks[5]] == ["ResBlock", "SpatialTransformer",
                                                                 "MotionModuleLayer", "Upsample"]
    assert all(any(isinstance(m, MotionModuleLayer) for m in block) for block in unet.output_blocks)
    comfy.model_management.unload_all_models()


def test_motion_scale_zero_makes_every_frame_the_plain_unet_on_that_frame_alone(base_model):
    animated = attach_motion_model(base_model, motion("animatelcm_t2v"), 0.0, "scaled_linear (SD1.5)")
    noise = comfy.sample.prepare_noise(torch.zeros(FRAMES, 4, 8, 8), 1)
    video = sample(animated, noise=noise)
    assert torch.equal(video, sample(base_model, noise=noise))
    for k in (0, 5):
        # A batch of one runs other kernels than a batch of 8: float32 rounding, amplified by sigma_max ~ 14.6.
        alone = sample(base_model, frames=1, noise=noise[k:k + 1])
        torch.testing.assert_close(video[k:k + 1], alone, atol=1e-5 * float(video.abs().max()), rtol=0)
    comfy.model_management.unload_all_models()


def test_two_motion_models_on_clones_of_one_model_sample_one_after_the_other(base_model):
    lcm = attach_motion_model(base_model, motion("animatelcm_t2v"), 1.0, "linear")
    v2 = attach_motion_model(base_model, motion("animatediff_v2", seed=1), 1.0, "linear")  # other weights
    first, second = sample(lcm), sample(v2)
    comfy.model_management.unload_all_models()
    assert torch.equal(sample(lcm), first)
    comfy.model_management.unload_all_models()
    assert torch.equal(sample(v2), second)
    assert not torch.equal(first, second)
    comfy.model_management.unload_all_models()
    assert motion_layers(base_model) == []


def test_more_frames_than_the_position_encoding_is_refused_before_loading(base_model):
    v1 = motion("animatediff_v1")
    animated = attach_motion_model(base_model, v1, 1.0)
    comfy.model_management.unload_all_models()
    with pytest.raises(ValueError, match="25 frames exceed the 24 frames .* context windows"):
        sample(animated, frames=25)
    assert not comfy.model_management.loaded_models()


def test_beta_schedules():
    model = tiny_sd15_model()
    sd15_sigma = float(model.get_model_object("model_sampling").sigma_max)
    t2v, v2 = motion("animatelcm_t2v"), motion("animatediff_v2")

    auto = attach_motion_model(model, t2v, 1.0).get_model_object("model_sampling")
    assert math.isclose(float(auto.sigma_max), 25.1461, abs_tol=1e-3)  # linear betas at t = 999 (reference table)
    x, eps, sigma = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2), auto.sigma(torch.tensor([749.0]))
    # LCM boundary conditions: denoised = c_out * x0 + c_skip * x, with s = 10 t, sigma_data 0.5
    s = 7490.0
    expected = s / math.sqrt(s * s + 0.25) * (x - sigma * eps) + 0.25 / (s * s + 0.25) * x
    torch.testing.assert_close(auto.calculate_denoised(sigma, eps, x), expected)

    plain = attach_motion_model(model, v2, 1.0).get_model_object("model_sampling")
    assert math.isclose(float(plain.sigma_max), 25.1461, abs_tol=1e-3)
    torch.testing.assert_close(plain.calculate_denoised(sigma, eps, x), x - sigma * eps)

    sd15 = attach_motion_model(model, t2v, 1.0, "scaled_linear (SD1.5)").get_model_object("model_sampling")
    assert math.isclose(float(sd15.sigma_max), sd15_sigma) and math.isclose(sd15_sigma, 14.6146, abs_tol=1e-3)

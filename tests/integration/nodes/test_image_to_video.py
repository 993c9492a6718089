"""ALCM_ImageToVideo: the image reaches the adapter as the reference does it, the I2V schedule, the refusals."""

import pytest
import torch

from comfy.patcher_extension import WrappersMP

from animatelcm.nodes.image_to_video import ImageToVideo
from animatelcm.patching.i2v_features import KEY, encode_image
from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.nodes.sampling import KSampler, Scheduler
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model


def motion(kind):
    path = mm.motion_module_file(kind, mm.TINY_WIDTH, dtype=torch.float32)
    return load_motion_model_file(str(path), path.name)


@pytest.fixture(scope="module")
def base():
    return tiny_sd15_model(tracks_input=True)


@pytest.fixture(scope="module")
def i2v(base):
    return attach_motion_model(base, motion("animatelcm_i2v"), 1.0, "auto")


def reference_sigmas(beta_end, timesteps):
    """Linear betas 0.00085 -> beta_end over 1000 steps, sigma = sqrt((1 - abar) / abar) (reference doc, 3-4)."""
    betas = torch.linspace(0.00085, beta_end, 1000, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()[timesteps]


def test_image_is_cropped_encoded_scaled_and_the_latent_is_empty(sd15, i2v):
    vae = sd15[2]
    image = torch.rand(2, 64, 128, 3, generator=torch.manual_seed(1))  # wider than the 64 x 64 target
    model, latent = ImageToVideo.execute(i2v, vae, image, 12, 64, 64, 0.8, 0.014).args
    assert latent["samples"].shape == (12, 4, 8, 8) and not latent["samples"].any()
    # The first image, its center 64 x 64, VAE encoded, in model space (x 0.18215) as the adapter was trained on.
    expected = vae.encode(image[:1, :, 32:96]) * 0.18215
    [wrapper] = model.get_wrappers(WrappersMP.DIFFUSION_MODEL, KEY)
    torch.testing.assert_close(wrapper.args[1], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(encode_image(vae, image, 64, 64), vae.encode(image[:1, :, 32:96]), rtol=0, atol=1e-5)
    assert wrapper.args[2] == 0.8
    assert not i2v.get_wrappers(WrappersMP.DIFFUSION_MODEL, KEY)  # the input MODEL is not changed


def test_i2v_schedule_auto_and_beta_end(sd15, i2v):
    """`auto` on an I2V motion model: linear betas to 0.014 and the 200-point grid; beta_end replaces the end."""
    assert torch.equal(Scheduler.execute(i2v, 4, 0, 1.0).args[0][:-1].double().round(decimals=4),
                       reference_sigmas(0.014, [999, 749, 499, 249]).round(decimals=4))
    torch.testing.assert_close(Scheduler.execute(i2v, 2, 0, 1.0).args[0][:-1].double(),
                               reference_sigmas(0.014, [999, 499]), rtol=1e-5, atol=0)
    model = ImageToVideo.execute(i2v, sd15[2], torch.rand(1, 64, 64, 3), 4, 64, 64, 0.8, 0.016).args[0]
    torch.testing.assert_close(Scheduler.execute(model, 4, 0, 1.0).args[0][:-1].double(),
                               reference_sigmas(0.016, [999, 749, 499, 249]), rtol=1e-5, atol=0)


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear (SD1.5)"])
def test_the_beta_schedule_chosen_when_applying_is_kept(sd15, base, beta_schedule):
    """A schedule other than auto, chosen in ALCM_ApplyMotionModel, stays: beta_end ends the linear one, SD1.5's
    keeps its end, and neither gets LCM boundary conditions."""
    chosen = attach_motion_model(base, motion("animatelcm_i2v"), 1.0, beta_schedule)
    model = ImageToVideo.execute(chosen, sd15[2], torch.rand(1, 64, 64, 3), 4, 64, 64, 0.8, 0.016).args[0]
    sampling = model.get_model_object("model_sampling")
    sd15_sigma_max = float(base.get_model_object("model_sampling").sigma_max)
    expected = float(reference_sigmas(0.016, [999])[0]) if beta_schedule == "linear" else sd15_sigma_max
    assert float(sampling.sigma_max) == pytest.approx(expected, rel=1e-5)
    x, eps = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    sigma = sampling.sigma(torch.tensor([0.0]))  # where LCM's boundary condition would return x itself
    torch.testing.assert_close(sampling.calculate_denoised(sigma, eps, x), x - sigma * eps)


def test_sampling_runs_and_motion_scale_zero_is_a_static_conditioning(sd15, i2v):
    image = torch.rand(1, 64, 64, 3, generator=torch.manual_seed(2))
    positive = [[torch.randn(1, 77, 768, generator=torch.manual_seed(3)), {}]]
    outputs = {}
    for scale in (0.0, 0.8):
        model, latent = ImageToVideo.execute(i2v, sd15[2], image, 4, 64, 64, scale, 0.014).args
        outputs[scale] = KSampler.execute(model, positive, positive, latent, 0, 2, 1.0, 1.0).args[0]["samples"]
        assert outputs[scale].shape == (4, 4, 8, 8) and torch.isfinite(outputs[scale]).all()
    plain = KSampler.execute(i2v, positive, positive, {"samples": torch.zeros(4, 4, 8, 8)}, 0, 2, 1.0, 1.0)
    assert (outputs[0.8] - outputs[0.0]).abs().max() > 1e-4  # the frame positions matter
    assert (outputs[0.0] - plain.args[0]["samples"]).abs().max() > 1e-4  # the image matters


def test_refusals(sd15, base, i2v):
    image = torch.rand(1, 64, 64, 3)
    t2v = attach_motion_model(base, motion("animatelcm_t2v"), 1.0, "auto")
    with pytest.raises(ValueError, match=r"needs a MODEL with an AnimateLCM-I2V motion model.*\(animatelcm_t2v\) has no image encoder"):
        ImageToVideo.execute(t2v, sd15[2], image, 16, 64, 64, 0.8, 0.014)
    with pytest.raises(ValueError, match="but no motion model is applied: load the I2V motion model"):
        ImageToVideo.execute(base, sd15[2], image, 16, 64, 64, 0.8, 0.014)
    assert "multiples of 8" in ImageToVideo.validate_inputs(100, 64)
    assert ImageToVideo.validate_inputs(512, 256) is True
    model = ImageToVideo.execute(i2v, sd15[2], image, 4, 64, 64, 0.8, 0.014).args[0]
    positive = [[torch.zeros(1, 77, 768), {}]]
    with pytest.raises(ValueError, match="latent is 128x128 px but ALCM_ImageToVideo encoded the image at 64x64"):
        KSampler.execute(model, positive, positive, {"samples": torch.zeros(4, 4, 16, 16)}, 0, 2, 1.0, 1.0)

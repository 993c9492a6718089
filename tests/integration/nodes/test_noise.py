"""The initial-noise options on a real sampling run: FreeNoise (ALCM_ContextOptions) reschedules the seeded noise the
sampler starts from; ALCM_FreeInit samples again from the last result's low frequencies joined to fresh noise."""

import math

import pytest
import torch

import comfy.sample
from comfy.patcher_extension import WrappersMP

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.nodes.context import ContextOptions
from animatelcm.nodes.free_init import FreeInit
from animatelcm.nodes.sampling import KSampler
from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.samplers.noise import free_noise


@pytest.fixture(scope="module")
def animated():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    return attach_motion_model(tiny_sd15_model(), load_motion_model_file(str(path), path.name), 1.0, "auto")


def prompt(seed=0):
    return [[torch.randn(1, 77, 768, generator=torch.manual_seed(seed)), {}]]


def sample(model, frames, seed=3, steps=2):
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    return KSampler.execute(model, prompt(), prompt(1), latent, seed, steps, 1.0, 1.0).args[0]["samples"]


def recording(model):
    """A clone whose innermost OUTER_SAMPLE wrapper records each run's starting noise and sigmas."""
    runs = []

    def record(executor, noise, latent_image, sampler, sigmas, *args, **kwargs):
        runs.append((noise.clone(), sigmas.clone()))
        return executor(noise, latent_image, sampler, sigmas, *args, **kwargs)

    m = model.clone()
    m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, "test_record", record)
    return m, runs


def windows(model, noise="default"):
    return ContextOptions.execute(model, 16, 4, 1, "uniform", "pyramid", noise).args[0]


def test_free_noise_reschedules_the_seeded_noise_the_sampler_starts_from(animated):
    default = comfy.sample.prepare_noise(torch.zeros(40, 4, 8, 8), 11)
    for noise_type, expected in [("default", default), ("FreeNoise", free_noise(default, 16, 4, 11))]:
        model, runs = recording(windows(animated, noise_type))
        sample(model, 40, seed=11, steps=1)
        assert torch.equal(runs[0][0], expected)
    assert not torch.equal(free_noise(default, 16, 4, 11), default)


def test_free_noise_also_reschedules_the_noise_of_each_lcm_step(animated):
    """The pack's sampler re-noises the denoised clip at every step; under FreeNoise that noise is rescheduled as the
    initial noise is, or the windows would start each later step from unrelated noise. With a model that denoises to
    zero, the second step's input is exactly sigma_1 times that step's noise."""
    frames, seed = 40, 7
    for noise_type in ("default", "FreeNoise"):
        inputs = {}

        def zero(apply_model, args):
            window = args["c"]["transformer_options"]["ad_params"]["sub_idxs"]
            inputs.setdefault(float(args["timestep"][0]), {}).update(zip(window, args["input"]))
            return torch.zeros_like(args["input"])

        model = windows(animated, noise_type).clone()
        model.set_model_unet_function_wrapper(zero)
        sample(model, frames, seed=seed, steps=2)
        generator = torch.Generator().manual_seed(seed)
        torch.randn(frames, 4, 8, 8, generator=generator)  # the initial noise
        step_noise = torch.randn(frames, 4, 8, 8, generator=generator)
        if noise_type == "FreeNoise":
            step_noise = free_noise(step_noise, 16, 4, seed)
        sigma_1 = sorted(inputs)[0]
        second = torch.stack([inputs[sigma_1][f] for f in range(frames)])
        torch.testing.assert_close(second, sigma_1 * step_noise, rtol=1e-6, atol=1e-5)


def test_free_noise_keeps_the_default_video_for_one_window_and_repeats_exactly(animated):
    free = windows(animated, "FreeNoise")
    assert torch.equal(sample(free, 12), sample(windows(animated), 12))
    assert torch.equal(sample(free, 20), sample(free, 20))
    assert not torch.equal(sample(free, 20), sample(windows(animated), 20))


def free_init(model, iterations, kind="gaussian", spatial=0.25, temporal=0.25):
    return FreeInit.execute(model, iterations, kind, spatial, temporal, 4).args[0]


def reference_restart(sampled, first_noise, fresh, sigma, spatial, temporal):
    """FreeInit's restart written out on its own: diffuse the latent (model units) back to `sigma` with the first
    noise, then keep its centred 3-D spectrum under a gaussian low pass and take the rest from `fresh`."""
    frames, _, height, width = sampled.shape
    alpha_bar = 1 / (1 + sigma ** 2)
    diffused = math.sqrt(alpha_bar) * sampled + math.sqrt(1 - alpha_bar) * first_noise
    mask = torch.zeros(frames, 1, height, width)
    for t in range(frames):
        for h in range(height):
            for w in range(width):
                d2 = (spatial / temporal * (2 * t / frames - 1)) ** 2 + (2 * h / height - 1) ** 2 \
                    + (2 * w / width - 1) ** 2
                mask[t, 0, h, w] = math.exp(-d2 / (2 * spatial ** 2))
    spectrum = torch.fft.fftshift(torch.fft.fftn(diffused, dim=(0, 2, 3)), dim=(0, 2, 3)) * mask \
        + torch.fft.fftshift(torch.fft.fftn(fresh, dim=(0, 2, 3)), dim=(0, 2, 3)) * (1 - mask)
    return torch.fft.ifftn(torch.fft.ifftshift(spectrum, dim=(0, 2, 3)), dim=(0, 2, 3)).real


def test_free_init_samples_again_from_the_first_results_low_frequencies(animated):
    plain_model, plain_runs = recording(animated)
    plain = sample(plain_model, 8, seed=5)
    model, runs = recording(free_init(animated, 3))
    out = sample(model, 8, seed=5)
    assert len(runs) == 3 and torch.equal(runs[0][0], plain_runs[0][0])  # the first run is plain sampling
    sigma = float(runs[0][1][0])
    fresh = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(5 + 1))
    expected = reference_restart(plain * 0.18215, runs[0][0], fresh, sigma, 0.25, 0.25)  # SD1.5 latent scale
    torch.testing.assert_close(runs[1][0], expected, rtol=0, atol=1e-5)
    assert not torch.equal(out, plain) and torch.equal(out, sample(free_init(animated, 3), 8, seed=5))


def test_one_iteration_is_plain_sampling_and_the_model_given_is_unchanged(animated):
    before = dict(animated.model_options)
    assert torch.equal(sample(free_init(animated, 1), 8), sample(animated, 8))
    assert animated.model_options == before


@pytest.mark.parametrize("free_init_first", [True, False], ids=["FreeInit-then-windows", "windows-then-FreeInit"])
def test_free_noise_reschedules_only_the_first_noise_never_free_inits_restart(animated, free_init_first):
    """In either wiring order, FreeInit restarts from the FreeNoise run's result with the FreeNoise noise, and that
    restart noise reaches the sampler as it is (rescheduling it would shuffle the clip it carries)."""
    if free_init_first:
        model = windows(free_init(animated, 2), "FreeNoise")
    else:
        model = free_init(windows(animated, "FreeNoise"), 2)
    model, runs = recording(model)
    sample(model, 24, seed=5, steps=1)
    first_noise = free_noise(comfy.sample.prepare_noise(torch.zeros(24, 4, 8, 8), 5), 16, 4, 5)
    assert torch.equal(runs[0][0], first_noise)
    first_result = sample(windows(animated, "FreeNoise"), 24, seed=5, steps=1)
    fresh = torch.randn(24, 4, 8, 8, generator=torch.Generator().manual_seed(5 + 1))
    expected = reference_restart(first_result * 0.18215, first_noise, fresh, float(runs[0][1][0]), 0.25, 0.25)
    torch.testing.assert_close(runs[1][0], expected, rtol=0, atol=1e-5)

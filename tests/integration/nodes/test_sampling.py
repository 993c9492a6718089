"""AnimateLCM sampling in ComfyUI against the reference: schedule, a full 4-step run, UNet passes, noise convention.

The reference loop is written from docs/reference.md section 3 in the official pipeline's units (x_t, VP
latents = ComfyUI LATENT x 0.18215), in float64 around the same UNet + motion-model forward; it shares no code with
ComfyUI's samplers or the pack's sampler.
"""

import math

import pytest
import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import nodes as comfy_nodes  # ComfyUI's core nodes
from comfy.patcher_extension import WrappersMP

from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.nodes.sampling import KSampler, Scheduler
from animatelcm.samplers.schedule import COMMUNITY
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import core_renoise_seed, tiny_sd15_model

FRAMES, SEED, SCALE_FACTOR, MOTION_SCALE = 8, 42, 0.18215, 0.2
SIGMAS = {  # reference table: sqrt((1 - abar) / abar) on linear betas 0.00085 -> 0.012
    1: [25.1461], 2: [25.1461, 2.2760], 4: [25.1461, 6.5572, 2.2760, 0.8670],
    6: [25.1461, 10.2446, 4.5550, 2.2760, 1.2425, 0.5973],
    8: [25.1461, 12.6586, 6.5572, 3.8352, 2.2760, 1.4462, 0.8670, 0.4760],
}
TIMESTEPS = {1: [999], 2: [999, 499], 4: [999, 749, 499, 249], 6: [999, 839, 669, 499, 339, 169],
             8: [999, 879, 749, 629, 499, 379, 249, 129]}
ALPHAS_CUMPROD = torch.cumprod(1 - torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64), 0)


@pytest.fixture(scope="module")
def animated():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    # A UNet whose noise prediction follows its input and a damped temporal residual (the last motion module adds
    # to the channels that carry the input) keep latents O(1), so float32 rounding stays far below the tolerance.
    motion = load_motion_model_file(str(path), path.name)
    return attach_motion_model(tiny_sd15_model(tracks_input=True), motion, MOTION_SCALE, "auto")


@pytest.fixture(scope="module")
def conds():
    context = torch.randn(2, 77, 768, generator=torch.manual_seed(7))
    return [[context[:1], {}]], [[context[1:], {}]]


def ksampler(model, conds, latent, steps=4, cfg=1.0, denoise=1.0):
    positive, negative = conds
    return KSampler.execute(model, positive, negative, {"samples": latent}, SEED, steps, cfg, denoise).args[0]["samples"]


@torch.no_grad()
def reference_lcm(model, context, latent, timesteps, renoise_seed=None):
    """The official loop. The initial noise is the seed's first CPU draw; the re-noise after each step is the next
    draw of that same generator (one generator, as the official pipeline), or with `renoise_seed` the draws of a
    generator started from that seed (core's noise sampler: see core_renoise_seed)."""
    draws = torch.Generator().manual_seed(SEED)
    first = torch.randn(latent.shape, generator=draws).double()
    if renoise_seed is not None:
        draws = torch.Generator().manual_seed(renoise_seed)
    noise = [first] + [torch.randn(latent.shape, generator=draws).double() for _ in range(len(timesteps) - 1)]
    comfy.model_management.load_models_gpu([model])
    options = dict(model.model_options["transformer_options"], cond_or_uncond=[0])
    unet = model.model.diffusion_model

    if timesteps[0] == 999:  # text-to-video starts from pure noise (the pipeline's init_noise_sigma is 1)
        x = noise[0]
    else:  # video-to-video noises the input latent to the first timestep
        abar = ALPHAS_CUMPROD[timesteps[0]]
        x = abar.sqrt() * latent.double() * SCALE_FACTOR + (1 - abar).sqrt() * noise[0]
    for i, t in enumerate(timesteps):
        abar = ALPHAS_CUMPROD[t]
        eps = unet(x.float(), timesteps=torch.full((latent.shape[0],), float(t)),
                   context=context.expand(latent.shape[0], -1, -1),
                   transformer_options=options).double()
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        s = 10.0 * t
        denoised = s / math.sqrt(s * s + 0.25) * x0 + 0.25 / (s * s + 0.25) * x
        if i == len(timesteps) - 1:
            return denoised
        abar_next = ALPHAS_CUMPROD[timesteps[i + 1]]
        x = abar_next.sqrt() * denoised + (1 - abar_next).sqrt() * noise[i + 1]


@pytest.mark.parametrize("steps", sorted(SIGMAS))
def test_scheduler_gives_the_reference_sigmas_and_lands_on_the_grid(animated, steps):
    sigmas = Scheduler.execute(animated, steps, 0, 1.0).args[0]
    torch.testing.assert_close(sigmas, torch.tensor(SIGMAS[steps] + [0.0]), atol=1e-4, rtol=0)
    timesteps = animated.get_model_object("model_sampling").timestep(sigmas[:-1])
    assert timesteps.tolist() == TIMESTEPS[steps]


def core_model_sampling_discrete(model, sampling):
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete

    return ModelSamplingDiscrete().patch(model, sampling, False)[0]


@pytest.mark.parametrize("sampling", ["lcm", "eps"])
def test_a_schedule_replaced_after_the_motion_model_is_refused_before_sampling(animated, conds, sampling):
    """Core's ModelSamplingDiscrete after ALCM_ApplyMotionModel: SD1.5's scaled_linear betas (and for lcm a 50-step
    table) instead of the motion model's schedule. Refused by the scheduler and the sampler, naming the fix."""
    replaced = core_model_sampling_discrete(animated, sampling)
    with pytest.raises(ValueError, match="replaced after ALCM_ApplyMotionModel.*remove that node"):
        Scheduler.execute(replaced, 4, 0, 1.0)
    unets = []
    replaced.set_model_unet_function_wrapper(lambda apply, args: unets.append(1) or apply(args["input"],
                                                                                           args["timestep"], **args["c"]))
    with pytest.raises(ValueError, match="replaced after ALCM_ApplyMotionModel"):
        ksampler(replaced, conds, torch.zeros(FRAMES, 4, 8, 8))
    assert unets == []  # refused before any UNet call


def test_core_model_sampling_before_the_motion_model_is_replaced_by_its_schedule(animated):
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    before = core_model_sampling_discrete(tiny_sd15_model(), "lcm")
    model = attach_motion_model(before, load_motion_model_file(str(path), path.name), MOTION_SCALE, "auto")
    torch.testing.assert_close(Scheduler.execute(model, 4, 0, 1.0).args[0], torch.tensor(SIGMAS[4] + [0.0]),
                               atol=1e-4, rtol=0)


def test_the_community_schedule_samples_as_core_lcm_model_sampling_does():
    """ALCM_ApplyMotionModel's community schedule: the scheduler takes its 50-point grid (999, 759, 499, 259 for 4
    steps), and sigmas, timesteps and denoised estimates are those of core's ModelSamplingDiscrete "lcm" (SD1.5's
    betas, LCM boundary conditions, a 50-entry table) with core's simple scheduler."""
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    motion = load_motion_model_file(str(path), path.name)
    ours = attach_motion_model(tiny_sd15_model(), motion, MOTION_SCALE, COMMUNITY)
    core = core_model_sampling_discrete(tiny_sd15_model(), "lcm").get_model_object("model_sampling")
    sigmas = Scheduler.execute(ours, 4, 0, 1.0).args[0]
    torch.testing.assert_close(sigmas, comfy.samplers.calculate_sigmas(core, "simple", 4).float(), atol=1e-4, rtol=0)
    sampling = ours.get_model_object("model_sampling")
    assert sampling.timestep(sigmas[:-1]).tolist() == core.timestep(sigmas[:-1]).tolist() == [999, 759, 499, 259]
    gen = torch.manual_seed(11)
    x, eps = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    for sigma in sigmas[:-1]:
        sigma = sigma.expand(2)
        torch.testing.assert_close(sampling.calculate_denoised(sigma, eps, x), core.calculate_denoised(sigma, eps, x),
                                   atol=1e-5, rtol=1e-5)
    # Not the faithful schedule: another table, another grid.
    assert not torch.allclose(sigmas, Scheduler.execute(attach_motion_model(tiny_sd15_model(), motion, MOTION_SCALE,
                                                                            "auto"), 4, 0, 1.0).args[0])


def test_an_animatediff_lightning_module_samples_with_core_euler_on_its_trailing_timesteps(conds):
    """AnimateDiff-Lightning (docs/nodes.md): AnimateDiff's layout and linear betas, no LCM boundary conditions;
    core's KSampler with euler + sgm_uniform at cfg 1 visits the trailing timesteps it was distilled on (999, 749,
    499, 249 for 4 steps), but for the last, one step off."""
    path = mm.motion_module_file("animatediff_lightning", mm.TINY_WIDTH, dtype=torch.float32, seed=3)
    motion = load_motion_model_file(str(path), mm.OFFICIAL_NAMES["animatediff_lightning"])
    assert not motion.is_animatelcm and motion.loaded.format.max_frames == 32
    model = attach_motion_model(tiny_sd15_model(tracks_input=True), motion, 1.0, "auto")
    sampling = model.get_model_object("model_sampling")
    assert type(sampling).__name__ == "EpsilonSampling"
    torch.testing.assert_close(sampling.sigmas.double(), ((1 - ALPHAS_CUMPROD) / ALPHAS_CUMPROD).sqrt(),
                               atol=1e-4, rtol=1e-5)
    seen = []

    def record(apply, args):
        seen.append(float(sampling.timestep(args["timestep"][:1])))
        return apply(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(record)
    latent = {"samples": torch.zeros(FRAMES, 4, 8, 8)}
    out = comfy_nodes.KSampler().sample(model, SEED, 4, 1.0, "euler", "sgm_uniform", *conds, latent)[0]["samples"]
    assert seen == [999, 749, 499, 250]  # core's nearest table entries to sgm_uniform's 999, 749.25, 499.5, 249.75
    assert torch.isfinite(out).all() and out.std() > 0


def test_a_50_step_table_on_a_model_without_motion_model_is_refused():
    with pytest.raises(ValueError, match="50-step table.*remove that node"):
        Scheduler.execute(core_model_sampling_discrete(tiny_sd15_model(), "lcm"), 4, 0, 1.0)


@pytest.mark.parametrize("denoise, timesteps", [(1.0, [999, 749, 499, 249]), (0.5, [499, 379, 249, 129])])
def test_a_full_run_matches_the_reference_loop(animated, conds, denoise, timesteps):
    latent = torch.zeros(FRAMES, 4, 8, 8) if denoise == 1 else torch.randn(FRAMES, 4, 8, 8, generator=torch.manual_seed(3))
    pack = ksampler(animated, conds, latent, denoise=denoise).double() * SCALE_FACTOR
    reference = reference_lcm(animated, conds[0][0][0], latent, timesteps)
    print(f"max abs diff {(pack - reference).abs().max().item():.2e}, latent max {reference.abs().max().item():.2f}")
    assert (pack - reference).abs().max() <= 1e-4
    # and the check can fail: re-noising from a generator restarted at the seed is far off
    assert (pack - reference_lcm(animated, conds[0][0][0], latent, timesteps, renoise_seed=SEED)).abs().max() > 1e-2


def test_core_custom_sampling_with_the_lcm_sampler_gives_the_faithful_run(animated, conds):
    """SamplerCustom + KSamplerSelect("lcm") + ALCM_Scheduler: the same reference loop with core's re-noise, which
    depends on the ComfyUI version (its first re-noise repeats the initial noise up to 0.6, not since 0.7.0); the
    pack's own sampler draws the same on every version."""
    latent = torch.zeros(FRAMES, 4, 8, 8)
    positive, negative = conds
    sigmas = Scheduler.execute(animated, 4, 0, 1.0).args[0]
    core = comfy.sample.sample_custom(animated, comfy.sample.prepare_noise(latent, SEED), 1.0,
                                      comfy.samplers.sampler_object("lcm"), sigmas, positive, negative, latent,
                                      disable_pbar=True, seed=SEED).double() * SCALE_FACTOR
    timesteps = [999, 749, 499, 249]
    reference = reference_lcm(animated, positive[0][0], latent, timesteps, renoise_seed=core_renoise_seed(SEED))
    assert (core - reference).abs().max() <= 1e-4
    other_convention = {SEED: SEED + 1, SEED + 1: SEED}[core_renoise_seed(SEED)]
    assert (core - reference_lcm(animated, positive[0][0], latent, timesteps, other_convention)).abs().max() > 1e-2


def test_same_seed_same_starting_noise_as_core_ksampler(animated, conds):
    latent = torch.zeros(FRAMES, 4, 8, 8)
    positive, negative = conds
    core = comfy.sample.sample(animated, comfy.sample.prepare_noise(latent, SEED), 1, 1.0, "lcm", "simple",
                               positive, negative, latent, disable_pbar=True, seed=SEED)
    assert torch.equal(ksampler(animated, conds, latent, steps=1), core)


@pytest.mark.parametrize("cfg, calls", [(1.0, [(FRAMES, [0])] * 4), (1.5, [(2 * FRAMES, [1, 0])] * 4)])
def test_unet_passes_per_step(animated, conds, cfg, calls):
    seen = []

    def count(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        seen.append((x.shape[0], list(transformer_options["cond_or_uncond"])))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    counted = animated.clone()
    counted.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "count", count)
    ksampler(counted, conds, torch.zeros(FRAMES, 4, 8, 8), cfg=cfg)
    assert seen == calls

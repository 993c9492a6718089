"""AnimateLCM-SVD-xt in ComfyUI against the reference: the schedule node, and a 4-step run through core's own graph
(SVD_img2vid_Conditioning -> VideoLinearCFGGuidance -> SamplerCustom with ALCM_SVDScheduler and the pack's
ALCM_Sampler, as the shipped workflow, or core's KSamplerSelect "lcm").

The reference loop is written from docs/reference.md section 5 (EDM v-prediction: c_skip = 1/(s^2+1),
c_out = -s/sqrt(s^2+1), c_in = 1/sqrt(s^2+1), c_noise = 0.25 ln s; LCM: denoise, then re-noise with fresh noise),
in float64 around the bare diffusion-model forward, in the model's working units (ComfyUI LATENT x 0.18215). It
computes its own fps/motion/augmentation embedding and per-frame guidance and shares no code with ComfyUI's model
wrappers, samplers or model sampling, nor with the pack's schedule: its sigmas are the reference table's.
"""

import itertools
import math

import pytest
import torch

from comfy.patcher_extension import WrappersMP
from comfy_extras.nodes_custom_sampler import KSamplerSelect, SamplerCustom
from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning, VideoLinearCFGGuidance

from animatelcm.nodes.sampling import Sampler
from animatelcm.nodes.svd_sampling import SVDScheduler
from animatelcm.devkit.comfy import core_renoise_seed, tiny_sd15_model
from animatelcm.devkit.svd_comfy import StandInClipVision, StandInVAE, tiny_svd_model

FRAMES, SIZE, SEED, SCALE_FACTOR, TOLERANCE = 14, 64, 42, 0.18215, 1e-4
FPS, MOTION_BUCKET, AUGMENTATION = 7, 127, 0.02
TABLE = {  # docs/reference.md section 5, as printed (each entry checked to its printed decimals)
    1: ["700", "0"],
    2: ["700", "13.6784", "0"],
    4: ["700", "128.5637", "13.6784", "0.4969", "0"],
    8: ["700", "315.74", "128.56", "45.85", "13.678", "3.167", "0.4969", "0.0398", "0"],
}
# The 4-step row at full precision for the reference loop: Karras rho 7 from 700 to 0.002, points 0/10/20/30 of 40.
SIGMAS_4 = [700.0, 128.56369722585464, 13.67844411279635, 0.49687842033435303, 0.0]
WRONG_SIGMA_MIN_4 = [700.0, 148.2258717623402, 20.106359931044285, 1.2150885474806254, 0.0]  # sigma_min 0.02


@pytest.fixture(scope="module")
def svd():
    return tiny_svd_model(tracks_input=True)


@pytest.fixture(scope="module")
def conditioning():
    """Core's SVD_img2vid_Conditioning on a 64x64 image, with stand-in CLIP-vision and VAE encoders."""
    image = torch.rand(1, SIZE, SIZE, 3, generator=torch.manual_seed(3))
    with torch.random.fork_rng():  # the node draws its augmentation noise from the global generator
        torch.manual_seed(4)
        return SVD_img2vid_Conditioning().encode(StandInClipVision(), image, StandInVAE(), SIZE, SIZE, FRAMES,
                                                 MOTION_BUCKET, FPS, AUGMENTATION)


SAMPLERS = ("ALCM_Sampler", "core lcm")


def comfy_run(svd, conditioning, cfg: float, steps: int = 4, model=None, sampler_node: str = SAMPLERS[0]):
    """The graph a user builds, node by node; returns the output LATENT samples."""
    positive, negative, latent = conditioning
    guided = VideoLinearCFGGuidance().patch(svd if model is None else model, 1.0)[0]
    sampler = (Sampler.execute() if sampler_node == "ALCM_Sampler" else KSamplerSelect.execute("lcm")).args[0]
    sigmas = SVDScheduler.execute(svd, steps).args[0]
    output = SamplerCustom.execute(guided, True, SEED, cfg, positive, negative, sampler, sigmas, latent).args[0]
    return output["samples"]


@pytest.fixture(scope="module")
def comfy_results(svd, conditioning):
    """Per (sampler, cfg): the final latent in working units, and (batch, cond_or_uncond) of every UNet pass."""
    results = {}
    for sampler_node, cfg in itertools.product(SAMPLERS, (1.0, 1.2)):
        passes = []

        def count(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
            passes.append((x.shape[0], list(transformer_options["cond_or_uncond"])))
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

        counted = svd.clone()
        counted.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "count", count)
        latent = comfy_run(svd, conditioning, cfg, model=counted, sampler_node=sampler_node).double() * SCALE_FACTOR
        results[sampler_node, cfg] = latent, passes
    return results


def sinusoidal(value: float, dim: int = 256) -> torch.Tensor:
    """SGM's embedding of a scalar: [cos(v f_k), sin(v f_k)], f_k = 10000^(-k / (dim/2))."""
    freqs = torch.exp(-math.log(10000) * torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    return torch.cat([torch.cos(value * freqs), torch.sin(value * freqs)])


def renoise_seed(sampler_node: str) -> int | None:
    """Where the sampler's re-noise comes from: the pack's continues the seed's generator after the initial noise;
    core's lcm starts a generator of its own, whose seed depends on the ComfyUI version (core_renoise_seed)."""
    return None if sampler_node == "ALCM_Sampler" else core_renoise_seed(SEED)


@torch.no_grad()
def reference_svd_lcm(svd, conditioning, sigmas, cfg: float, min_cfg: float = 1.0, renoise: bool = True,
                      per_frame: bool = True, renoise_seed: int | None = None):
    """AnimateLCM-SVD sampling from section 5, with ComfyUI's noise: the seed's first CPU draw is the initial noise;
    the re-noise after each step is the next draw of that generator, or with `renoise_seed` the draws of a generator
    started from that seed."""
    positive, negative, latent = conditioning
    shape = latent["samples"].shape
    draws = torch.Generator().manual_seed(SEED)
    first = torch.randn(shape, generator=draws).double()
    if renoise_seed is not None:
        draws = torch.Generator().manual_seed(renoise_seed)
    noise = [first] + [torch.randn(shape, generator=draws).double() for _ in range(len(sigmas) - 2)]
    unet = svd.model.diffusion_model
    frames = shape[0]

    def branch(entry):  # one CONDITIONING entry -> the UNet's extra inputs for all frames
        embedding, values = entry
        y = torch.cat([sinusoidal(values["fps"] - 1), sinusoidal(values["motion_bucket_id"]),
                       sinusoidal(values["augmentation_level"])])
        return {"concat": values["concat_latent_image"].double().expand(frames, -1, -1, -1),
                "context": embedding.reshape(1, 1, -1).expand(frames, -1, -1).float(),
                "y": y.expand(frames, -1).float()}

    cond, uncond = branch(positive[0]), branch(negative[0])
    scale = torch.linspace(min_cfg, cfg, frames, dtype=torch.float64) if per_frame else torch.full((frames,), cfg)
    scale = scale.view(-1, 1, 1, 1)

    # EDM starts from sigma_max * noise. (Core scales the first noise by sqrt(1 + sigma_max^2) instead, as it does
    # for every v/eps model at its maximum sigma: 1e-6 relative, far below the tolerance.)
    x = sigmas[0] * noise[0]
    for i, s in enumerate(sigmas[:-1]):
        c_skip, c_out, c_in = 1 / (s * s + 1), -s / math.sqrt(s * s + 1), 1 / math.sqrt(s * s + 1)
        c_noise = torch.full((frames,), 0.25 * math.log(s))

        def denoise(inputs):
            model_input = torch.cat([c_in * x, inputs["concat"]], dim=1).float()
            v = unet(model_input, c_noise, context=inputs["context"], y=inputs["y"], num_video_frames=frames,
                     transformer_options={}).double()
            return c_skip * x + c_out * v

        denoised = denoise(cond)
        if cfg != 1.0 or min_cfg != 1.0:
            denoised_uncond = denoise(uncond)
            denoised = denoised_uncond + scale * (denoised - denoised_uncond)
        if sigmas[i + 1] == 0:
            return denoised
        x = denoised + sigmas[i + 1] * noise[i + 1] if renoise else denoised


def decimals(printed: str) -> int:
    return len(printed.partition(".")[2])


def test_the_reference_loop_sigmas_are_the_table_row():
    assert [round(s, decimals(p)) for s, p in zip(SIGMAS_4, TABLE[4])] == [float(p) for p in TABLE[4]]


@pytest.mark.parametrize("steps", sorted(TABLE))
def test_scheduler_gives_the_reference_table(svd, steps):
    sigmas = SVDScheduler.execute(svd, steps).args[0]
    assert sigmas.dtype == torch.float32 and sigmas.shape == (len(TABLE[steps]),)
    for sigma, printed in zip(sigmas.double().tolist(), TABLE[steps]):
        assert abs(sigma - float(printed)) <= 0.5 * 10 ** -decimals(printed) + 1e-5 * sigma, (sigma, printed)


def test_scheduler_refuses_a_model_that_is_not_svd():
    with pytest.raises(ValueError, match=r"ALCM_SVDScheduler: the MODEL is BaseModel \(SD15\), not Stable Video "
                                         r"Diffusion: load SVD-xt with Image Only Checkpoint Loader.*AnimateLCM "
                                         r"Load SVD-xt UNet.*ALCM_Scheduler"):
        SVDScheduler.execute(tiny_sd15_model(), 4)


def test_the_conditioning_is_what_svd_expects(conditioning):
    positive, negative, latent = conditioning
    assert latent["samples"].shape == (FRAMES, 4, SIZE // 8, SIZE // 8)
    assert positive[0][0].shape == (1, 1, 1024) and positive[0][1]["concat_latent_image"].shape == (1, 4, 8, 8)
    assert {k: positive[0][1][k] for k in ("fps", "motion_bucket_id", "augmentation_level")} == {
        "fps": FPS, "motion_bucket_id": MOTION_BUCKET, "augmentation_level": AUGMENTATION}
    assert not negative[0][0].any() and not negative[0][1]["concat_latent_image"].any()


@pytest.mark.parametrize("sampler_node", SAMPLERS)
@pytest.mark.parametrize("cfg", [1.0, 1.2])
def test_a_4_step_run_matches_the_reference_loop(svd, conditioning, comfy_results, sampler_node, cfg):
    comfy = comfy_results[sampler_node, cfg][0]
    reference = reference_svd_lcm(svd, conditioning, SIGMAS_4, cfg, renoise_seed=renoise_seed(sampler_node))
    diff = (comfy - reference).abs().max().item()
    print(f"{sampler_node}, cfg {cfg}: max abs diff {diff:.2e} (working units), latent max "
          f"{reference.abs().max().item():.2f}")
    assert diff <= TOLERANCE


@pytest.mark.parametrize("wrong", ["sigma_min 0.02", "no re-noise", "a restarted generator's re-noise",
                                   "one cfg for all frames"])
def test_the_comparison_can_fail(svd, conditioning, comfy_results, wrong):
    kwargs = {"sigma_min 0.02": {"sigmas": WRONG_SIGMA_MIN_4}, "no re-noise": {"renoise": False},
              "a restarted generator's re-noise": {"renoise_seed": SEED},
              "one cfg for all frames": {"per_frame": False}}[wrong]
    cfg = 1.2 if wrong == "one cfg for all frames" else 1.0
    reference = reference_svd_lcm(svd, conditioning, **{"sigmas": SIGMAS_4, "cfg": cfg, **kwargs})
    diff = (comfy_results["ALCM_Sampler", cfg][0] - reference).abs().max().item()
    print(f"{wrong}: max abs diff {diff:.2e}")
    assert diff > 10 * TOLERANCE


@pytest.mark.parametrize("sampler_node", SAMPLERS)
@pytest.mark.parametrize("cfg, calls", [(1.0, [(FRAMES, [0])] * 4), (1.2, [(2 * FRAMES, [1, 0])] * 4)])
def test_unet_passes_per_step(comfy_results, sampler_node, cfg, calls):
    """At cfg 1 (min = max = 1) core never evaluates the negative: one pass of the 14 frames per step."""
    assert comfy_results[sampler_node, cfg][1] == calls

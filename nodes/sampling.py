"""AnimateLCM sampling nodes: the faithful schedule as SIGMAS, the LCM update as SAMPLER, and both in one KSampler."""

import torch

import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..samplers.lcm import sample_animatelcm
from ..samplers.schedule import I2V_ORIGINAL_STEPS, T2V_ORIGINAL_STEPS, lcm_timesteps
from .injection import applied_motion_model


def animatelcm_sigmas(model: comfy.model_patcher.ModelPatcher, steps: int, original_steps: int = 0,
                      denoise: float = 1.0) -> torch.Tensor:
    """Noise levels of the LCM timesteps on the model's own schedule (the motion model's, once applied)."""
    if original_steps == 0:
        motion = applied_motion_model(model)
        original_steps = I2V_ORIGINAL_STEPS if motion and motion.loaded.format.has_image_encoder else T2V_ORIGINAL_STEPS
    timesteps = torch.tensor(lcm_timesteps(steps, original_steps, denoise))
    # The discrete schedule's own table (as core's schedulers read it), so the model sees exactly these timesteps.
    sigmas = model.get_model_object("model_sampling").sigmas[timesteps].float().cpu()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def animatelcm_sampler() -> comfy.samplers.KSAMPLER:
    return comfy.samplers.KSAMPLER(sample_animatelcm)


class Scheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_Scheduler",
            display_name="AnimateLCM Scheduler",
            category="AnimateLCM/sampling",
            description="The AnimateLCM timesteps (e.g. 999, 749, 499, 249 for 4 steps) as sigmas for SamplerCustom.",
            inputs=[
                io.Model.Input("model"),
                io.Int.Input("steps", default=4, min=1, max=50),
                io.Int.Input("original_steps", default=0, min=0, max=1000,
                             tooltip="The distillation grid: 0 = auto (100 for AnimateLCM-T2V, 200 for I2V)."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Below 1, start from a partly noised input latent (video-to-video)."),
            ],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, model: io.Model.Type, steps: int, original_steps: int, denoise: float) -> io.NodeOutput:
        return io.NodeOutput(animatelcm_sigmas(model, steps, original_steps, denoise))


class Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_Sampler",
            display_name="AnimateLCM Sampler",
            category="AnimateLCM/sampling",
            description="The LCM update: denoise, then re-noise to the next level with fresh seeded noise.",
            inputs=[],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(animatelcm_sampler())


class KSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_KSampler",
            display_name="AnimateLCM KSampler",
            category="AnimateLCM/sampling",
            description="AnimateLCM sampling in one node. At cfg 1 the negative prompt is never evaluated: one UNet "
                        "pass per step.",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image", tooltip="The batch size is the frame count."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="The same seed gives the same starting noise as core's KSampler."),
                io.Int.Input("steps", default=4, min=1, max=50),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="1 = no classifier-free guidance (fastest); 1-2 with a negative prompt."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, model: io.Model.Type, positive, negative, latent_image, seed: int, steps: int, cfg: float,
                denoise: float) -> io.NodeOutput:
        latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
        noise = comfy.sample.prepare_noise(latent, seed, latent_image.get("batch_index"))
        samples = comfy.sample.sample_custom(
            model, noise, cfg, animatelcm_sampler(), animatelcm_sigmas(model, steps, 0, denoise), positive, negative,
            latent, noise_mask=latent_image.get("noise_mask"), callback=latent_preview.prepare_callback(model, steps),
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        return io.NodeOutput({**latent_image, "samples": samples})

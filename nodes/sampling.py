"""AnimateLCM sampling nodes: the faithful schedule as SIGMAS, the LCM update as SAMPLER, and both in one KSampler."""

from comfy_api.latest import io

from ..patching.lcm_sampling import animatelcm_sampler, animatelcm_sigmas, sample_video


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
                             tooltip="The distillation grid: 0 = the applied schedule's (100 for AnimateLCM-T2V, "
                                     "200 for I2V, 50 for the community schedule)."),
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
        return io.NodeOutput(sample_video(model, positive, negative, latent_image, seed, steps, cfg, denoise))

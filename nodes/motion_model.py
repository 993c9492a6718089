"""Load a motion module and apply it to an SD1.5 MODEL."""

import folder_paths
from comfy_api.latest import io

from ..patching.motion_injection import attach_motion_model, load_motion_model_file
from ..patching.motion_lora import MotionLoRA, load_motion_lora_file, with_motion_loras
from ..patching.motion_strength import motion_strength
from ..samplers.schedule import BETA_SCHEDULE_CHOICES
from .types import MOTION_LORAS, MOTION_MODELS, MotionLoRASocket, MotionModelSocket, MultivalSocket
from .validation import outside_declared_range, percent_range_problem, refuse


class LoadMotionModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_LoadMotionModel",
            display_name="Load AnimateLCM Motion Model",
            category="AnimateLCM",
            description="Loads an SD1.5 motion module (AnimateLCM T2V/I2V, AnimateDiff v1/v2/v3) from "
                        "models/animatediff_models. The format is told from the file's keys.",
            inputs=[io.Combo.Input("model_name", options=folder_paths.get_filename_list(MOTION_MODELS),
                                   tooltip="A .ckpt or .safetensors motion module; .ckpt files are read weights-only.")],
            outputs=[MotionModelSocket.Output(display_name="motion_model")],
        )

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_motion_model_file(folder_paths.get_full_path_or_raise(MOTION_MODELS, model_name),
                                                    model_name))


class ApplyMotionModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_ApplyMotionModel",
            display_name="Apply AnimateLCM Motion Model",
            category="AnimateLCM",
            description="Returns a clone of the model whose UNet runs the motion module; the latent batch is the "
                        "frame count.",
            inputs=[
                io.Model.Input("model"),
                MotionModelSocket.Input("motion_model"),
                io.Float.Input("motion_scale", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Scales what the motion module adds to each frame (its temporal residual, "
                                       "AnimateDiff-Evolved's effect): 0 makes every frame independent. "
                                       "(ALCM_ImageToVideo's motion_scale is another knob: how far the frames may "
                                       "move away from the image.)"),
                io.Combo.Input("beta_schedule", options=list(BETA_SCHEDULE_CHOICES), default="auto",
                               tooltip="auto: the schedule the motion model was trained with (linear betas "
                                       "0.00085-0.012, to 0.014 for AnimateLCM-I2V), plus the LCM boundary "
                                       "conditions for AnimateLCM models: the faithful one. community: SD1.5's "
                                       "scaled_linear betas with LCM boundary conditions and a 50-point grid (4 "
                                       "steps: 999, 759, 499, 259), what most shared AnimateLCM workflows use."),
                MotionLoRASocket.Input("motion_lora", optional=True,
                                       tooltip="Motion LoRAs from AnimateLCM Load Motion LoRA, merged into this "
                                               "motion model for this model only."),
                MultivalSocket.Input("effect_multival", optional=True,
                                     tooltip="Multiplies motion_scale per frame, or per frame and pixel (a mask): "
                                             "from AnimateLCM Value Schedule or an AnimateDiff-Evolved Multival "
                                             "node. Under context windows each window takes its frames' values."),
                MultivalSocket.Input("scale_multival", optional=True,
                                     tooltip="Multiplies the motion modules' attention keys, per frame or pixel: "
                                             "above 1 each frame follows its most similar frames more closely, below "
                                             "1 it averages all frames more evenly (AnimateDiff-Evolved's scale)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001, optional=True,
                               tooltip="The motion modules run from this point of the sampling (0: the first "
                                       "step); before it the frames are sampled independently."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001, optional=True,
                               tooltip="The motion modules run up to this point of the sampling (1: the last "
                                       "step)."),
            ],
            outputs=[io.Model.Output(tooltip="A clone of the model with the motion module attached.")],
        )

    @classmethod
    def validate_inputs(cls, motion_scale: float = 1.0, start_percent: float = 0.0, end_percent: float = 1.0
                        ) -> bool | str:
        return (outside_declared_range(cls, motion_scale=motion_scale)
                or percent_range_problem(cls, start_percent, end_percent) or True)

    @classmethod
    def execute(cls, model: io.Model.Type, motion_model, motion_scale: float, beta_schedule: str,
                motion_lora: list[MotionLoRA] | None = None, effect_multival=None, scale_multival=None,
                start_percent: float = 0.0, end_percent: float = 1.0) -> io.NodeOutput:
        if motion_lora is not None and not (isinstance(motion_lora, list)
                                            and all(isinstance(lora, MotionLoRA) for lora in motion_lora)):
            raise ValueError("motion_lora: connect AnimateLCM Load Motion LoRA (ALCM_LoadMotionLoRA); another pack's "
                             "motion LoRA loader gives entries this node cannot read")
        refuse(outside_declared_range(cls, motion_scale=motion_scale)
               or percent_range_problem(cls, start_percent, end_percent))
        strength = motion_strength(motion_scale, effect_multival, scale_multival, start_percent, end_percent)
        motion = with_motion_loras(motion_model, motion_lora)
        return io.NodeOutput(attach_motion_model(model, motion, strength, beta_schedule))


class LoadMotionLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_LoadMotionLoRA",
            display_name="AnimateLCM Load Motion LoRA",
            category="AnimateLCM",
            description="Loads a motion LoRA (AnimateDiff v2 camera LoRAs, MotionDirector temporal LoRAs) from "
                        "models/animatediff_motion_lora, for AnimateLCM Apply Motion Model; chain several.",
            inputs=[
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list(MOTION_LORAS),
                               tooltip="A .safetensors or .ckpt motion LoRA; .ckpt files are read weights-only."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="The merged weight is W + strength x up @ down."),
                MotionLoRASocket.Input("prev_motion_lora", optional=True,
                                       tooltip="Earlier motion LoRAs: their changes add up."),
            ],
            outputs=[MotionLoRASocket.Output(display_name="motion_lora")],
        )

    @classmethod
    def execute(cls, lora_name: str, strength: float, prev_motion_lora: list[MotionLoRA] | None = None
                ) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(MOTION_LORAS, lora_name)
        return io.NodeOutput(load_motion_lora_file(path, lora_name, strength, prev_motion_lora))

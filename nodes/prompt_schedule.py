"""Prompt travel: a CONDITIONING whose text embedding changes over the frames, from keyframed prompts."""

from comfy_api.latest import io

from ..patching.prompt_travel import encode_schedule
from ..samplers.prompt_schedule import INTERPOLATIONS, parse_prompt_schedule


class PromptSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_PromptSchedule",
            display_name="AnimateLCM Prompt Schedule",
            category="AnimateLCM/conditioning",
            description="Prompt travel: one prompt per keyframe (`0: a cat walking`, `32: a dog running`), blended "
                        "in between, as a per-frame CONDITIONING.",
            inputs=[
                io.Clip.Input("clip"),
                io.String.Input("text", multiline=True, default="0: a cat walking in a garden\n"
                                                                "16: a dog running on a beach",
                                tooltip="One `frame: prompt` per line (`\"frame\": \"prompt\",` as in ADE and "
                                        "FizzNodes works too); lines starting with # are comments; -1 is the last "
                                        "frame. Frames before the first keyframe use its prompt, frames after the "
                                        "last use the last one."),
                io.Int.Input("frame_count", default=16, min=0, max=10000,
                             tooltip="The latent's frame count (its batch size); 0: the latent's, read when "
                                     "sampling with a model from AnimateLCM Apply Motion Model."),
                io.Combo.Input("interpolation", options=list(INTERPOLATIONS), default="linear",
                               tooltip="linear: a straight mix between keyframes; ease: slow at both ends; none: "
                                       "switch at each keyframe."),
                io.String.Input("pre_text", default="", optional=True,
                                tooltip="Written before every prompt, joined with \", \"."),
                io.String.Input("app_text", default="", optional=True,
                                tooltip="Written after every prompt, joined with \", \"."),
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def validate_inputs(cls, text: str) -> bool | str:
        """Syntax only; where negative keyframes land depends on the frame count, checked when the node runs."""
        if not isinstance(text, str):  # linked from another node: checked when it runs
            return True
        try:
            parse_prompt_schedule(text)
        except ValueError as error:
            return f"ALCM_PromptSchedule: {error}"
        return True

    @classmethod
    def execute(cls, clip, text: str, frame_count: int, interpolation: str, pre_text: str = "",
                app_text: str = "") -> io.NodeOutput:
        return io.NodeOutput(encode_schedule(clip, text, frame_count, interpolation, pre_text, app_text))

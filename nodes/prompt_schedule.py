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
                                tooltip="One `frame: prompt` per line; lines starting with # are comments. Frames "
                                        "before the first keyframe use its prompt, frames after the last use the "
                                        "last one."),
                io.Int.Input("frame_count", default=16, min=1, max=10000,
                             tooltip="The latent's frame count (its batch size)."),
                io.Combo.Input("interpolation", options=list(INTERPOLATIONS), default="linear",
                               tooltip="linear: a straight mix between keyframes; ease: slow at both ends; none: "
                                       "switch at each keyframe."),
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def validate_inputs(cls, text: str) -> bool | str:
        if not isinstance(text, str):  # linked from another node: checked when it runs
            return True
        try:
            parse_prompt_schedule(text)
        except ValueError as error:
            return f"ALCM_PromptSchedule: {error}"
        return True

    @classmethod
    def execute(cls, clip, text: str, frame_count: int, interpolation: str) -> io.NodeOutput:
        return io.NodeOutput(encode_schedule(clip, text, frame_count, interpolation))

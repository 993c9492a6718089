"""ALCM_ValueSchedule: a number keyframed over the frames (and optionally masked over the pixels), as a MULTIVAL for
the motion strength inputs of AnimateLCM Apply Motion Model (or AnimateDiff-Evolved's)."""

import torch
from comfy_api.latest import io

from ..patching.motion_strength import combined
from ..samplers.prompt_schedule import INTERPOLATIONS
from ..samplers.value_schedule import frame_values, parse_value_schedule, schedule_length
from .types import MultivalSocket
from .validation import outside_declared_range, refuse


class ValueSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_ValueSchedule",
            display_name="AnimateLCM Value Schedule",
            category="AnimateLCM",
            description="One value per frame from keyframes (`0: 0.5`, `15: 1.2`), interpolated between them, for "
                        "effect_multival or scale_multival: for example a motion that grows over the clip. A mask "
                        "makes it per pixel too.",
            inputs=[
                io.String.Input("schedule", multiline=True, default="0: 0.5\n15: 1.2",
                                tooltip="`frame: value`, one per line or comma-separated (`0:(0.5), 15:(1.2)` "
                                        "pastes as is). Frames before the first keyframe hold its value, frames "
                                        "after the last hold the last; a negative frame counts from the end."),
                io.Int.Input("frame_count", default=0, min=0, max=10000,
                             tooltip="0: up to the last keyframe (a longer clip holds the last value). Needed for "
                                     "negative frames."),
                io.Combo.Input("interpolation", options=list(INTERPOLATIONS), default="linear",
                               tooltip="Between keyframes: linear, ease (smoothstep), or none (hold until the next)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Multiplies the values per pixel, one mask per frame (the last one repeats); "
                                      "resized to each level of the UNet."),
            ],
            outputs=[MultivalSocket.Output(display_name="multival")],
        )

    @classmethod
    def validate_inputs(cls, schedule: str | None = None, frame_count: int | None = 0) -> bool | str:
        problem = outside_declared_range(cls, frame_count=frame_count)
        if problem is None and isinstance(schedule, str):  # a linked schedule is checked when it runs
            try:
                keys = parse_value_schedule(schedule)
                if isinstance(frame_count, int):
                    frame_values(keys, frame_count or schedule_length(keys))
            except ValueError as error:
                problem = str(error)
        return problem or True

    @classmethod
    def execute(cls, schedule: str, frame_count: int, interpolation: str, mask: torch.Tensor | None = None
                ) -> io.NodeOutput:
        refuse(outside_declared_range(cls, frame_count=frame_count))
        keys = parse_value_schedule(schedule)
        values = frame_values(keys, frame_count or schedule_length(keys), interpolation)
        multival = torch.tensor(values, dtype=torch.float32)[:, None, None]
        if mask is not None:
            multival = combined(multival, mask.float().cpu().reshape(-1, *mask.shape[-2:]))
        return io.NodeOutput(multival)

"""ALCM_ContextOptions: clips longer than the motion model's 16 frames as overlapping windows
(patching/context_handler.py)."""

from comfy_api.latest import io

from ..patching.context_handler import apply_context_windows
from ..samplers.context_windows import FUSE_METHODS, SCHEDULES
from ..samplers.noise import NOISE_TYPES
from .validation import outside_declared_range, refuse


class ContextOptions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_ContextOptions",
            display_name="AnimateLCM Context Windows",
            category="AnimateLCM",
            description="Samples clips longer than the motion model's 16 frames as overlapping windows fused per "
                        "frame, so memory is bounded by the window, not the clip.",
            inputs=[
                io.Model.Input("model"),
                io.Int.Input("context_length", default=16, min=2, max=64,
                             tooltip="Frames per window: 16, what the motion model was trained on."),
                io.Int.Input("context_overlap", default=4, min=0, max=63, tooltip="Frames shared by neighbours."),
                io.Int.Input("context_stride", default=1, min=1, max=8,
                             tooltip="Uniform schedules: also use windows of every 2nd, 4th... frame, up to this "
                                     "power of two (longer-range motion)."),
                io.Combo.Input("schedule", options=list(SCHEDULES), default="uniform",
                               tooltip="uniform: windows shift each step; looped uniform: also across the end into "
                                       "the start (a seamless loop); static: fixed windows; batched: no overlap."),
                io.Combo.Input("fuse_method", options=list(FUSE_METHODS), default="pyramid",
                               tooltip="How overlapping windows are averaged: pyramid weights a window's middle "
                                       "frames most."),
                io.Combo.Input("noise", options=list(NOISE_TYPES), default="default", optional=True,
                               tooltip="default: independent noise per frame. FreeNoise: each window's new frames "
                                       "start from the earlier frames' noise, shuffled (seeded), so neighbouring "
                                       "windows agree and seams fade; the same seed gives the same video."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, context_length: int, context_overlap: int) -> bool | str:
        return cls.problem(context_length, context_overlap) or True

    @classmethod
    def problem(cls, context_length: int, context_overlap: int, context_stride: int | None = None) -> str | None:
        problem = outside_declared_range(cls, context_length=context_length, context_overlap=context_overlap,
                                         context_stride=context_stride)
        if problem is None and None not in (context_length, context_overlap) and context_overlap >= context_length:
            problem = (f"context_overlap ({context_overlap}) must be smaller than context_length ({context_length}): "
                       f"windows would not advance")
        return problem

    @classmethod
    def execute(cls, model: io.Model.Type, context_length: int, context_overlap: int, context_stride: int,
                schedule: str, fuse_method: str, noise: str = "default") -> io.NodeOutput:
        refuse(cls.problem(context_length, context_overlap, context_stride))
        return io.NodeOutput(apply_context_windows(model, context_length, context_overlap, context_stride, schedule,
                                                   fuse_method, noise))

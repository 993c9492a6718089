"""ALCM_ApplyVideoControlNet: a stock ControlNet guided by one hint per frame (patching/video_control.py)."""

from comfy_api.latest import io

from ..patching.video_control import apply_video_controlnet
from .validation import percent_range_problem, refuse


class ApplyVideoControlNet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_ApplyVideoControlNet",
            display_name="AnimateLCM Apply Video ControlNet",
            category="AnimateLCM/conditioning",
            description="A stock ControlNet guided by one hint image per frame (pose, depth, line art...), aligned "
                        "with the frames under cond/uncond batching and every context window schedule.",
            inputs=[
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.ControlNet.Input("control_net"),
                io.Image.Input("images", tooltip="One hint per frame: hint k guides frame k."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001),
                io.Boolean.Input("spread", default=False,
                                 tooltip="With fewer (or more) hints than frames: off holds the last hint over the "
                                         "remaining frames; on stretches the hints evenly over the whole clip."),
                io.Vae.Input("vae", optional=True, tooltip="Only for ControlNets that take latent hints."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Where the control acts (1) and where not (0); one mask per frame, or one for "
                                      "all, fitted to the frames like the hints."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"),
                     io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def validate_inputs(cls, start_percent: float, end_percent: float) -> bool | str:
        return percent_range_problem(cls, start_percent, end_percent) or True

    @classmethod
    def execute(cls, positive, negative, control_net, images, strength, start_percent, end_percent, spread,
                vae=None, mask=None) -> io.NodeOutput:
        refuse(percent_range_problem(cls, start_percent, end_percent))
        if strength == 0:
            return io.NodeOutput(positive, negative)
        return io.NodeOutput(*apply_video_controlnet(positive, negative, control_net, images, strength,
                                                     start_percent, end_percent, spread, vae, mask))

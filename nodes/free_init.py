"""ALCM_FreeInit: sample the clip several times, each run starting from the last one's low frequencies
(patching/noise.py), for steadier videos at a multiple of the sampling time."""

from comfy_api.latest import io

from ..patching.noise import FreeInit as FreeInitSettings
from ..patching.noise import apply_free_init
from ..samplers.noise import FREEINIT_FILTERS


class FreeInit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_FreeInit",
            display_name="AnimateLCM FreeInit",
            category="AnimateLCM",
            description="FreeInit: the whole sampling runs `iterations` times; after the first, each run starts "
                        "from the previous clip's low frequencies (diffused back to the first step) joined to fresh "
                        "high-frequency noise. Steadier clips; the sampling time is multiplied by `iterations`.",
            inputs=[
                io.Model.Input("model"),
                io.Int.Input("iterations", default=2, min=1, max=5,
                             tooltip="Sampling runs in all: the sampling time is multiplied by this (1: off)."),
                io.Combo.Input("filter", options=list(FREEINIT_FILTERS), default="butterworth",
                               tooltip="The low-pass filter over frames, height and width (FreeInit's default: "
                                       "butterworth)."),
                io.Float.Input("spatial_stop", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="The filter's cut-off in height and width (0..1 of the spectrum)."),
                io.Float.Input("temporal_stop", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="The filter's cut-off over the frames (0..1 of the spectrum)."),
                io.Int.Input("butterworth_order", default=4, min=1, max=16, tooltip="Only for butterworth."),
            ],
            outputs=[io.Model.Output(tooltip="A clone of the model that samples with FreeInit; the input model is "
                                             "unchanged.")],
        )

    @classmethod
    def execute(cls, model: io.Model.Type, iterations: int, filter: str, spatial_stop: float, temporal_stop: float,
                butterworth_order: int) -> io.NodeOutput:
        settings = FreeInitSettings(iterations, filter, spatial_stop, temporal_stop, butterworth_order)
        return io.NodeOutput(apply_free_init(model, settings))

"""ALCM_LoadSparseCtrl, ALCM_ApplySparseCtrl: AnimateDiff v3's SparseCtrl on keyframes (patching/sparse_control.py)."""

import folder_paths
from comfy_api.latest import io

from ..patching.sparse_control import apply_sparse_control, load_sparse_control_file
from .types import SparseCtrlSocket
from .validation import percent_range_problem, refuse


class LoadSparseCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_LoadSparseCtrl",
            display_name="Load AnimateLCM SparseCtrl",
            category="AnimateLCM/conditioning",
            description="Loads an AnimateDiff v3 SparseCtrl model (RGB or scribble) from models/controlnet; which one "
                        "is told from the file's keys.",
            inputs=[io.Combo.Input("sparsectrl_name", options=folder_paths.get_filename_list("controlnet"),
                                   tooltip="v3_sd15_sparsectrl_rgb.ckpt or v3_sd15_sparsectrl_scribble.ckpt; .ckpt "
                                           "files are read weights-only.")],
            outputs=[SparseCtrlSocket.Output(display_name="sparsectrl")],
        )

    @classmethod
    def execute(cls, sparsectrl_name: str) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise("controlnet", sparsectrl_name)
        return io.NodeOutput(load_sparse_control_file(path, sparsectrl_name))


class ApplySparseCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_ApplySparseCtrl",
            display_name="AnimateLCM Apply SparseCtrl",
            category="AnimateLCM/conditioning",
            description="Guides the clip from a few keyframes (images for the RGB model, scribbles for the scribble "
                        "model) at the frames they belong to; under context windows each window sees its own "
                        "keyframes, and a window without one is left alone.",
            inputs=[
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                SparseCtrlSocket.Input("sparsectrl"),
                io.Image.Input("images", tooltip="The keyframes, in the order of frame_indices."),
                io.String.Input("frame_indices", default="",
                                tooltip="The frame of each keyframe, such as '0, 31' or '0, -1' (-1 is the last "
                                        "frame); empty spreads them evenly from the first frame to the last."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001),
                io.Vae.Input("vae", optional=True, tooltip="Needed by the RGB model, which reads its keyframes as "
                                                           "VAE latents."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"),
                     io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def validate_inputs(cls, start_percent: float, end_percent: float) -> bool | str:
        return percent_range_problem(cls, start_percent, end_percent) or True

    @classmethod
    def execute(cls, positive, negative, sparsectrl, images, frame_indices: str, strength: float,
                start_percent: float, end_percent: float, vae=None) -> io.NodeOutput:
        refuse(percent_range_problem(cls, start_percent, end_percent))
        if strength == 0:
            return io.NodeOutput(positive, negative)
        return io.NodeOutput(*apply_sparse_control(positive, negative, sparsectrl, images, frame_indices, strength,
                                                   start_percent, end_percent, vae))

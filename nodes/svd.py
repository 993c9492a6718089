"""ALCM_LoadSVDUNet: the AnimateLCM-SVD-xt UNet put into the stock SVD-xt MODEL (patching/svd_weights.py)."""

import folder_paths
from comfy_api.latest import io

from ..patching.svd_weights import load_svd_unet

UNET_FOLDER = "diffusion_models"  # ComfyUI 0.3.75 lists models/unet and models/diffusion_models under this name


class LoadSVDUNet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_LoadSVDUNet",
            display_name="AnimateLCM Load SVD-xt UNet",
            category="AnimateLCM/SVD",
            description="Puts the AnimateLCM-SVD-xt UNet (the diffusers-layout file from models/diffusion_models "
                        "or models/unet) into the stock SVD-xt MODEL, converting its key names at load time.",
            inputs=[
                io.Model.Input("model", tooltip="The SVD-xt MODEL from Image Only Checkpoint Loader "
                                                "(svd_xt.safetensors), which also gives CLIP vision and the VAE."),
                io.Combo.Input("unet_name", options=folder_paths.get_filename_list(UNET_FOLDER),
                               tooltip="AnimateLCM-SVD-xt.safetensors: the fine-tuned SVD-xt UNet alone, in "
                                       "diffusers' layout; .ckpt files are read weights-only."),
            ],
            outputs=[io.Model.Output(tooltip="A clone of the model running the AnimateLCM-SVD-xt UNet weights; the "
                                             "input model is unchanged.")],
        )

    @classmethod
    def execute(cls, model: io.Model.Type, unet_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_svd_unet(model, folder_paths.get_full_path_or_raise(UNET_FOLDER, unet_name),
                                           unet_name))

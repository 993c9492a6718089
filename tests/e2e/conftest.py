"""End-to-end tier: one real ComfyUI server per session, with the pack, the generated model files and an input video."""

import pytest

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.controlnet import controlnet_file
from animatelcm.devkit.lora import lora_file
from animatelcm.devkit.sd15_checkpoint import checkpoint_file
from animatelcm.devkit.sparse_control import OFFICIAL_NAMES as SPARSECTRL_NAMES, sparse_control_file
from animatelcm.devkit.svd_checkpoint import svd_checkpoint_file
from animatelcm.devkit.svd_unet import SVD_XT_NAME, svd_xt_unet_file
from animatelcm.devkit.server import ComfyServer
from animatelcm.devkit.videos import write_input_image, write_input_video

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"  # the name the shipped workflows use
LORA = "AnimateLCM_sd15_t2v_lora.safetensors"
MOTION_MODEL = mm.OFFICIAL_NAMES["animatelcm_t2v"]
I2V_MOTION_MODEL = mm.OFFICIAL_NAMES["animatelcm_i2v"]
NOT_A_MOTION_MODULE = "a_lora_in_the_wrong_folder.safetensors"
SECOND_MOTION_MODEL = "v3_sd15_mm.safetensors"
INPUT_VIDEO = "animatelcm_input.mp4"  # the name the video-to-video and ControlNet workflows use
CONTROLNET = "control_v11p_sd15_canny_fp16.safetensors"  # the name the ControlNet workflow uses
I2V_LORA = "AnimateLCM_sd15_i2v_lora.safetensors"
INPUT_IMAGE = "animatelcm_input.png"  # the name the image-to-video workflows use
KEYFRAMES = ("animatelcm_first_frame.png", "animatelcm_last_frame.png")  # the SparseCtrl workflow's keyframes
SVD_CHECKPOINT = "svd_xt.safetensors"  # Stability's SVD-xt, as the SVD workflow names it
# Test size, where the size is not what a test is about: small, and every node runs at it (4x4 latents through the
# UNet's three downsamplings; ALCM_ImageToVideo starts at 64). 512 px is for real use; on CPU, pixels cost minutes.
SIZE = 32
I2V_SIZE = 64


def svd_models() -> dict:
    return {"checkpoints": {SVD_CHECKPOINT: svd_checkpoint_file()}, "diffusion_models": {SVD_XT_NAME: svd_xt_unet_file()}}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    svd = svd_models()  # listed, so the SVD workflow validates here; it runs on its own server (test_svd.py)
    models = {
        "checkpoints": {CHECKPOINT: checkpoint_file(), **svd["checkpoints"]},
        "diffusion_models": svd["diffusion_models"],
        "loras": {LORA: lora_file(), I2V_LORA: lora_file()},
        "controlnet": {CONTROLNET: controlnet_file(), SPARSECTRL_NAMES["rgb"]: sparse_control_file("rgb")},
        "animatediff_models": {
            mm.OFFICIAL_NAMES["animatelcm_t2v"]: mm.motion_module_file("animatelcm_t2v", fmt="ckpt"),
            I2V_MOTION_MODEL: mm.motion_module_file("animatelcm_i2v", fmt="ckpt"),
            NOT_A_MOTION_MODULE: lora_file(),
            SECOND_MOTION_MODEL: mm.motion_module_file("animatediff_v2", seed=1),  # other weights, .safetensors
        },
    }
    comfy = ComfyServer(tmp_path_factory.mktemp("comfyui"), models)
    write_input_video(comfy.base_dir / "input" / INPUT_VIDEO)
    write_input_image(comfy.base_dir / "input" / INPUT_IMAGE)
    for keyframe, size in zip(KEYFRAMES, (64, 48)):  # two sizes: core's ImageBatch fits the second to the first
        write_input_image(comfy.base_dir / "input" / keyframe, size, size)
    yield comfy
    comfy.stop()

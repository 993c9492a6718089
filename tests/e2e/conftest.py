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
MOTION_LORA = "v2_lora_ZoomIn.ckpt"  # an AnimateDiff v2 camera LoRA, as the motion-LoRA workflow names it
INPUT_VIDEO = "animatelcm_input.mp4"  # the name the video-to-video and ControlNet workflows use
INPUT_TONE_FROM = 0.5  # seconds: its sound is silence, then a 440 Hz tone (the finishing workflow keeps it)
CONTROLNET = "control_v11p_sd15_canny_fp16.safetensors"  # the name the ControlNet workflow uses
I2V_LORA = "AnimateLCM_sd15_i2v_lora.safetensors"
INPUT_IMAGE = "animatelcm_input.png"  # the name the image-to-video workflows use
KEYFRAMES = ("animatelcm_first_frame.png", "animatelcm_last_frame.png")  # the SparseCtrl workflow's keyframes
SVD_CHECKPOINT = "svd_xt.safetensors"  # Stability's SVD-xt, as the SVD workflow names it
# Test size, where the size is not what a test is about: small, and every node runs at it (4x4 latents through the
# UNet's three downsamplings; ALCM_ImageToVideo starts at 64). 512 px is for real use; on CPU, pixels cost minutes.
SIZE = 32
I2V_SIZE = 64
# Model size: the real layouts, detected by core as SD1.5 and SVD (model_channels 320, context 768 / 1024), with 320
# channels at every level instead of 320/640/1280/1280: about 8 times less weight to read per UNet pass, which is
# what a step costs on CPU at test size. Full-size files are loaded and sampled in the integration tier.
CHANNEL_MULT = (1, 1, 1, 1)
WIDTH = (320, 320, 320, 320)


def sd15_models() -> dict:
    """The SD1.5 files of the end-to-end servers (at the e2e model size), by model folder and official name."""
    return {
        "checkpoints": {CHECKPOINT: checkpoint_file(channel_mult=CHANNEL_MULT)},
        "loras": {LORA: lora_file(channel_mult=CHANNEL_MULT), I2V_LORA: lora_file(channel_mult=CHANNEL_MULT)},
        "controlnet": {CONTROLNET: controlnet_file(channel_mult=CHANNEL_MULT),
                       SPARSECTRL_NAMES["rgb"]: sparse_control_file("rgb", WIDTH)},
        "animatediff_models": {
            MOTION_MODEL: mm.motion_module_file("animatelcm_t2v", WIDTH, fmt="ckpt"),
            I2V_MOTION_MODEL: mm.motion_module_file("animatelcm_i2v", WIDTH, fmt="ckpt"),
            NOT_A_MOTION_MODULE: lora_file(channel_mult=CHANNEL_MULT),
            SECOND_MOTION_MODEL: mm.motion_module_file("animatediff_v2", WIDTH, seed=1),  # other weights, .safetensors
        },
        "animatediff_motion_lora": {MOTION_LORA: mm.motion_lora_file("animatediff", WIDTH, fmt="ckpt")},
    }


def svd_models() -> dict:
    """SVD-xt and the AnimateLCM-SVD-xt UNet at the same model size (the image encoder and VAE are full size)."""
    return {"checkpoints": {SVD_CHECKPOINT: svd_checkpoint_file(channel_mult=CHANNEL_MULT)},
            "diffusion_models": {SVD_XT_NAME: svd_xt_unet_file(channels=WIDTH)}}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    svd = svd_models()
    models = sd15_models()
    models["checkpoints"].update(svd["checkpoints"])
    models["diffusion_models"] = svd["diffusion_models"]
    comfy = ComfyServer(tmp_path_factory.mktemp("comfyui"), models)
    write_input_video(comfy.base_dir / "input" / INPUT_VIDEO, frames=48, tone_from=INPUT_TONE_FROM)  # 2 s
    write_input_image(comfy.base_dir / "input" / INPUT_IMAGE)
    for keyframe, size in zip(KEYFRAMES, (64, 48)):  # two sizes: core's ImageBatch fits the second to the first
        write_input_image(comfy.base_dir / "input" / keyframe, size, size)
    yield comfy
    comfy.stop()

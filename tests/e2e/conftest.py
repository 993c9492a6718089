"""End-to-end tier: one real ComfyUI server per session, with the pack, the generated model files and an input video."""

from fractions import Fraction

import av
import numpy as np
import pytest

from animatelcm.tests.fixtures import motion_modules as mm
from animatelcm.tests.fixtures.lora import lora_file
from animatelcm.tests.fixtures.sd15_checkpoint import checkpoint_file
from animatelcm.tests.fixtures.server import ComfyServer

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"  # the name the shipped workflows use
LORA = "AnimateLCM_sd15_t2v_lora.safetensors"
MOTION_MODEL = mm.OFFICIAL_NAMES["animatelcm_t2v"]
NOT_A_MOTION_MODULE = "a_lora_in_the_wrong_folder.safetensors"
SECOND_MOTION_MODEL = "v3_sd15_mm.safetensors"
INPUT_VIDEO = "animatelcm_input.mp4"  # the name the video-to-video workflow uses


def write_input_video(path, frames=24, rate=24, width=96, height=64):
    """A moving gradient as H.264, written with PyAV directly (not with the pack's writer)."""
    y, x = np.mgrid[:height, :width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(rate))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = np.stack([(x * 2 + i * 8) % 256, (y * 3) % 256, np.full_like(x, 10 * i % 256)], -1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    models = {
        "checkpoints": {CHECKPOINT: checkpoint_file()},
        "loras": {LORA: lora_file()},
        "animatediff_models": {
            mm.OFFICIAL_NAMES["animatelcm_t2v"]: mm.motion_module_file("animatelcm_t2v", fmt="ckpt"),
            NOT_A_MOTION_MODULE: lora_file(),
            SECOND_MOTION_MODEL: mm.motion_module_file("animatediff_v2", seed=1),  # other weights, .safetensors
        },
    }
    comfy = ComfyServer(tmp_path_factory.mktemp("comfyui"), models)
    write_input_video(comfy.base_dir / "input" / INPUT_VIDEO)
    yield comfy
    comfy.stop()

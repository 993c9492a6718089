"""Adapters trained teacher-free by the training command line load and sample in ComfyUI over HTTP: a ControlNet in
the shipped ControlNet workflow, an I2V image encoder in the shipped image-to-video workflow, each on the student it
was trained for (the server's own LoRA and motion model)."""

import os
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest

from animatelcm.devkit.comfy import ROOT, comfyui_path
from animatelcm.devkit.training import adapter_config_file
from animatelcm.devkit.workflows import WORKFLOWS, api_twin, at_test_size, strip_meta

from .conftest import CHECKPOINT, I2V_SIZE, LORA, MOTION_MODEL, SIZE

@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    """Both adapters, trained by scripts/train.py on the server's student and put in its model folders for this
    module's tests (taken out after: the server is shared, other tests read its file lists)."""
    root, models = tmp_path_factory.mktemp("adapters"), server.base_dir / "models"
    names = {}
    for adapter, file, folder in (("layout", "controlnet.safetensors", "controlnet"),
                                  ("image", "i2v_motion_module.safetensors", "animatediff_models")):
        config = adapter_config_file(root / f"{adapter}.toml", models.resolve() / "checkpoints" / CHECKPOINT,
                                     models.resolve() / "loras" / LORA,
                                     models.resolve() / "animatediff_models" / MOTION_MODEL, adapter, root / adapter,
                                     steps=1, learning_rate=0.01)
        env = dict(os.environ, COMFYUI_PATH=str(comfyui_path()), OMP_NUM_THREADS="1")
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--config", str(config)],
                                capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        names[adapter] = models / folder / f"trained_{adapter}_{file}"
        shutil.copy(root / adapter / file, names[adapter])
    yield {adapter: path.name for adapter, path in names.items()}
    for path in names.values():
        path.unlink()


def frames_of(server, history: dict) -> np.ndarray:
    (video,) = [v for output in history["outputs"].values() for v in output.get("gifs", output.get("images", []))]
    path = server.output_dir / video["subfolder"] / video["filename"]
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32)


def test_a_trained_controlnet_steers_the_shipped_controlnet_workflow(server, trained):
    prompt = at_test_size(strip_meta(api_twin(WORKFLOWS / "animatelcm_controlnet_video.json")), SIZE, I2V_SIZE)
    prompt["2"]["inputs"]["strength_model"] = 1.0  # the student the ControlNet was trained on
    prompt["9"]["inputs"]["control_net_name"] = trained["layout"]
    prompt["10"]["inputs"]["strength"] = 1.0
    controlled = frames_of(server, server.run(prompt))
    prompt["10"]["inputs"]["strength"] = 0.0
    plain = frames_of(server, server.run(prompt))
    assert controlled.shape == plain.shape and controlled.shape[0] > 1
    assert np.abs(controlled - plain).mean() > 1.0  # in 8-bit levels: the trained ControlNet changes the video


def test_a_trained_i2v_encoder_animates_an_image_in_the_shipped_workflow(server, trained):
    prompt = at_test_size(strip_meta(api_twin(WORKFLOWS / "animatelcm_image_to_video.json")), SIZE, I2V_SIZE)
    prompt["2"]["inputs"].update(lora_name=LORA, strength_model=1.0)  # the T2V student it was trained on
    prompt["3"]["inputs"]["model_name"] = trained["image"]
    prompt["8"]["inputs"]["beta_end"] = 0.012  # the student's schedule, which it was trained on
    frames = frames_of(server, server.run(prompt))
    assert frames.shape[0] == prompt["8"]["inputs"]["frames"] and frames.std() > 1.0

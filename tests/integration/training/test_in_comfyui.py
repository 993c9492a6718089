"""A model trained here works in ComfyUI: its motion module loads through ALCM_LoadMotionModel, its LoRA through
core's LoraLoaderModelOnly, and the pack's ALCM_KSampler samples it to the clip the trainer's own sampler gives."""

import pytest
import torch
from safetensors.torch import load_file

import comfy.latent_formats
import comfy.sample
import comfy.supported_models
import folder_paths
import nodes as core_nodes

from animatelcm.nodes.motion_model import ApplyMotionModel, LoadMotionModel
from animatelcm.nodes.sampling import KSampler
from animatelcm.nodes.types import MOTION_MODELS
from animatelcm.devkit.comfy import model_patcher
from animatelcm.training.backbones import load_backbone
from animatelcm.training.lora import SpatialLoRA
from animatelcm.training.models import VideoUNet
from animatelcm.training.sampling import sample
from animatelcm.training.trainer import LORA_FILE, MOTION_FILE, Trainer, read_motion_model

from .conftest import FRAMES, SIZE, config, stage_models

SEED, STEPS = 3, 4
CAPTION = "a green square moving up"


class Pixels(comfy.latent_formats.LatentFormat):
    """The tiny proof model works on RGB pixels: three channels, no scaling."""

    latent_channels = 3


@pytest.fixture
def student(trained, tmp_path, monkeypatch):
    """A direct-distilled student's files, in ComfyUI's model folders."""
    Trainer(config("direct", tmp_path / "run", stage_models(trained, "direct"), steps=3)).run()
    for folder, name in ((MOTION_MODELS, MOTION_FILE), ("loras", LORA_FILE)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"trained_{name}").write_bytes((tmp_path / "run" / name).read_bytes())
        monkeypatch.setitem(folder_paths.folder_names_and_paths, folder,
                            ([str(tmp_path / folder)], folder_paths.supported_pt_extensions))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    return tmp_path / "run"


def test_a_trained_student_samples_through_the_pack_nodes_as_in_training(trained, student):
    backbone = load_backbone("tiny", str(trained["base"]), torch.device("cpu"), SIZE)
    context = backbone.encode_text([CAPTION]).detach()
    base_weights = {k[5:]: v for k, v in load_file(trained["base"]).items() if k.startswith("unet.")}

    # ComfyUI: the base UNet as an SD1.5 MODEL, core's LoRA loader, the pack's motion-model and sampler nodes
    model_config = comfy.supported_models.SD15(dict(backbone.unet_config))
    model_config.latent_format = Pixels()
    model = model_patcher(model_config, base_weights)
    model = core_nodes.LoraLoaderModelOnly().load_lora_model_only(model, f"trained_{LORA_FILE}", 1.0)[0]
    motion = LoadMotionModel.execute(f"trained_{MOTION_FILE}").args[0]
    assert motion.is_animatelcm
    model = ApplyMotionModel.execute(model, motion, 1.0, "auto").args[0]
    latent = torch.zeros(FRAMES, 3, SIZE, SIZE)
    conds = [[context, {}]]
    out = KSampler.execute(model, conds, conds, {"samples": latent}, SEED, STEPS, 1.0, 1.0).args[0]["samples"]

    # The trainer's sampler on the trained weights, from the noise ComfyUI draws for the seed
    lora = SpatialLoRA(backbone.unet, backbone.unet_config, rank=4)
    lora.load_state_dict(load_file(student / LORA_FILE))
    motion_model = read_motion_model(str(student / MOTION_FILE), torch.device("cpu"))
    unet = VideoUNet(backbone.unet)
    noise = comfy.sample.prepare_noise(latent, SEED).unsqueeze(0)
    with lora.applied(1.0):
        expected = sample(lambda x, t, c: unet(x, t, c, motion_model), noise, context, "lcm", STEPS, seed=SEED)[0]

    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert expected.std() > 0.1  # a real clip, not a constant

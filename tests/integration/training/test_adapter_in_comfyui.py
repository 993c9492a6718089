"""Adapters trained here work in ComfyUI: on an SD1.5 student (the real key layouts, 320 channels at every level), a
ControlNet trained teacher-free loads through core's ControlNetLoader and ALCM_ApplyVideoControlNet, an I2V image
encoder through ALCM_LoadMotionModel and ALCM_ImageToVideo, and ALCM_KSampler samples each to the clip the trainer's
own sampler gives on the same weights."""

import pytest
import torch
from safetensors.torch import load_file

import comfy.latent_formats
import comfy.sample
import folder_paths
import nodes as core_nodes

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.lora import lora_file
from animatelcm.devkit.sd15_checkpoint import checkpoint_file
from animatelcm.nodes.controlnet import ApplyVideoControlNet
from animatelcm.nodes.image_to_video import ImageToVideo
from animatelcm.nodes.motion_model import ApplyMotionModel, LoadMotionModel
from animatelcm.nodes.sampling import KSampler
from animatelcm.nodes.types import MOTION_MODELS
from animatelcm.patching.compat import load_checkpoint_static
from animatelcm.training.adapters import ImageAdapter, LayoutAdapter, conditioned_net, layout_hint
from animatelcm.training.backbones import load_backbone
from animatelcm.training.config import Config
from animatelcm.training.lora import SpatialLoRA
from animatelcm.training.models import VideoUNet
from animatelcm.training.sampling import sample
from animatelcm.training.shapes import MovingShapes
from animatelcm.training.trainer import CONTROLNET_FILE, I2V_FILE, Trainer, read_motion_model

CHANNEL_MULT, WIDTH = (1, 1, 1, 1), (320, 320, 320, 320)
FRAMES, SIZE, SEED, STEPS = 2, 64, 5, 2
CAPTION = "a blue square moving right"
SCHEDULE_BETA_END = 0.012  # the student's schedule, the one an encoder trained here learnt on
SD15 = comfy.latent_formats.SD15()  # the trainer works in model space, ComfyUI's LATENT is the VAE's


@pytest.fixture(scope="module")
def student():
    return {"base": str(checkpoint_file(channel_mult=CHANNEL_MULT)),
            "lora": str(lora_file(channel_mult=CHANNEL_MULT)),
            "motion_module": str(mm.motion_module_file("animatelcm_t2v", WIDTH))}


def train(student: dict, adapter: str, out) -> None:
    """One step at a high rate: the adapter's zero-initialised outputs move far enough to change every sample."""
    Trainer(Config.from_dict({
        "model": {"backbone": "sd15", "lora_rank": 8, **student},
        "data": {"frames": FRAMES, "size": SIZE},
        "train": {"stage": "adapter", "adapter": adapter, "steps": 1, "batch_size": 1, "learning_rate": 0.01},
        "output": {"dir": str(out), "sample_steps": 1, "sample_captions": [CAPTION]},
    })).run()


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Puts files in ComfyUI's model folders: folder name -> {file name: path}."""

    def register(files: dict[str, dict[str, str]]):
        for folder, named in files.items():
            (tmp_path / folder).mkdir(exist_ok=True)
            for name, path in named.items():
                (tmp_path / folder / name).write_bytes(open(path, "rb").read())
            monkeypatch.setitem(folder_paths.folder_names_and_paths, folder,
                                ([str(tmp_path / folder)], folder_paths.supported_pt_extensions))
        monkeypatch.setattr(folder_paths, "filename_list_cache", {})

    return register


def comfy_student(student: dict, motion_name: str):
    """The student in ComfyUI: checkpoint, core's LoRA loader, the pack's motion-model nodes."""
    model, clip, vae = load_checkpoint_static(student["base"])
    model = core_nodes.LoraLoaderModelOnly().load_lora_model_only(model, "student_lora.safetensors", 1.0)[0]
    motion = LoadMotionModel.execute(motion_name).args[0]
    return ApplyMotionModel.execute(model, motion, 1.0, "auto").args[0], vae


def trainer_student(student: dict, motion_path: str):
    backbone = load_backbone("sd15", student["base"], torch.device("cpu"))
    SpatialLoRA(backbone.unet, backbone.unet_config, 8).load_state_dict(load_file(student["lora"]))
    return backbone, VideoUNet(backbone.unet), read_motion_model(motion_path, torch.device("cpu"))


def clip_of_shapes() -> torch.Tensor:
    return MovingShapes(frames=FRAMES, size=SIZE).sample(1, torch.Generator().manual_seed(3)).videos  # [1, F, 3, H, W]


def test_a_controlnet_trained_here_samples_through_core_and_the_pack_as_in_training(student, folders, tmp_path):
    train(student, "layout", tmp_path / "run")
    folders({"loras": {"student_lora.safetensors": student["lora"]},
             MOTION_MODELS: {"student_mm.safetensors": student["motion_module"]},
             "controlnet": {"trained_controlnet.safetensors": str(tmp_path / "run" / CONTROLNET_FILE)}})
    hint = layout_hint(clip_of_shapes(), SIZE // 8)  # [1, F, 3, H, W] in [0, 1]
    backbone, unet, motion = trainer_student(student, student["motion_module"])
    context = backbone.encode_text([CAPTION])

    model, _ = comfy_student(student, "student_mm.safetensors")
    control_net = core_nodes.ControlNetLoader().load_controlnet("trained_controlnet.safetensors")[0]
    conds = [[context, {}]]
    positive, negative = ApplyVideoControlNet.execute(conds, conds, control_net, hint[0].movedim(1, -1), 1.0, 0.0,
                                                      1.0, False).args
    latent = torch.zeros(FRAMES, 4, SIZE // 8, SIZE // 8)
    out = KSampler.execute(model, positive, negative, {"samples": latent}, SEED, STEPS, 1.0, 1.0).args[0]["samples"]
    uncontrolled = KSampler.execute(model, conds, conds, {"samples": latent}, SEED, STEPS, 1.0, 1.0).args[0]["samples"]

    adapter = LayoutAdapter(backbone.unet_config).load_file(tmp_path / "run" / CONTROLNET_FILE)
    noise = comfy.sample.prepare_noise(latent, SEED).unsqueeze(0)
    expected = sample(conditioned_net(unet, motion, adapter, hint), noise, context, "lcm", STEPS, seed=SEED)[0]

    torch.testing.assert_close(SD15.process_in(out), expected, rtol=1e-4, atol=1e-4)  # in model space
    assert (out - uncontrolled).abs().max() > 1e-2  # the ControlNet really steers the sample


def test_an_i2v_encoder_trained_here_samples_through_the_pack_as_in_training(student, folders, tmp_path):
    train(student, "image", tmp_path / "run")
    folders({"loras": {"student_lora.safetensors": student["lora"]},
             MOTION_MODELS: {"trained_i2v.safetensors": str(tmp_path / "run" / I2V_FILE)}})
    first = clip_of_shapes()[:, :1]  # [1, 1, 3, H, W] in [-1, 1]
    backbone, unet, motion = trainer_student(student, str(tmp_path / "run" / I2V_FILE))
    context = backbone.encode_text([CAPTION])

    model, vae = comfy_student(student, "trained_i2v.safetensors")
    image = ((first[0] + 1) / 2).movedim(1, -1)  # ComfyUI IMAGE [1, H, W, 3] in [0, 1]
    model, latent = ImageToVideo.execute(model, vae, image, FRAMES, SIZE, SIZE, 0.8, SCHEDULE_BETA_END).args
    conds = [[context, {}]]
    out = KSampler.execute(model, conds, conds, latent, SEED, STEPS, 1.0, 1.0).args[0]["samples"]

    adapter = ImageAdapter(WIDTH, 4, 0.8).load_file(tmp_path / "run" / I2V_FILE)
    noise = comfy.sample.prepare_noise(latent["samples"], SEED).unsqueeze(0)
    expected = sample(conditioned_net(unet, motion, adapter, backbone.encode_video(first)), noise, context, "lcm",
                      STEPS, seed=SEED)[0]
    torch.testing.assert_close(SD15.process_in(out), expected, rtol=1e-4, atol=1e-4)  # in model space
    trained = load_file(tmp_path / "run" / I2V_FILE)
    assert trained["img_encoder.conv_in.weight"].abs().max() > 5e-3  # trained away from its zero start

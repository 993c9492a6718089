"""Stage 1 at SD1.5 scale on the full-size fixture checkpoint: ComfyUI's loader gives the UNet, CLIP and VAE, one step
trains, and the kohya LoRA it writes covers the real SD1.5 UNet's layers as ComfyUI maps them."""

import math

import comfy.lora
from safetensors.torch import load_file

from animatelcm.training.config import Config
from animatelcm.training.trainer import LORA_FILE, Trainer


def test_stage1_trains_on_an_sd15_checkpoint_and_its_lora_maps_onto_sd15(sd15_checkpoint_path, sd15, tmp_path):
    config = Config.from_dict({
        "model": {"backbone": "sd15", "base": str(sd15_checkpoint_path), "lora_rank": 4},
        "data": {"frames": 2, "size": 64},
        "train": {"stage": "image", "steps": 1, "batch_size": 1},
        "output": {"dir": str(tmp_path), "sample_steps": 1, "sample_captions": ["a red square moving left"]},
    })
    report = Trainer(config).run()
    assert report["steps"] == 1 and math.isfinite(report["loss"])
    assert [p.suffix for p in (tmp_path / "samples").iterdir()] == [".png"]

    weights = load_file(tmp_path / LORA_FILE)
    model = sd15[0]
    patches = comfy.lora.load_lora(weights, comfy.lora.model_lora_keys_unet(model.model, {}))
    # SD1.5's 16 spatial transformers, 12 layers each: q, k, v, out of both attentions, 2 feed-forward, proj_in/out
    assert len(patches) == len(weights) // 3 == 16 * 12

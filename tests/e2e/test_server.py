"""The harness itself: ComfyUI serves the pack, and the fixture checkpoint runs through stock nodes over HTTP."""

import io

import pytest
from PIL import Image

from animatelcm.devkit.server import PromptError

from .conftest import CHECKPOINT, SIZE


def text_to_image(checkpoint: str, prefix: str) -> dict:
    """A stock SD1.5 text-to-image prompt in API format."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "a red fox in the snow"}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": ""}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "seed": 7, "steps": 4, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}},
    }


def test_fixture_checkpoint_renders_an_image_through_stock_nodes(server):
    history = server.run(text_to_image(CHECKPOINT, "e2e/t2i"))
    assert history["status"]["status_str"] == "success"
    [image] = history["outputs"]["save"]["images"]
    assert (server.output_dir / image["subfolder"] / image["filename"]).is_file()
    picture = Image.open(io.BytesIO(server.view(image["filename"], image["subfolder"])))
    assert picture.size == (SIZE, SIZE)
    assert {e["type"] for e in server.events} >= {"execution_start", "executing", "progress", "execution_success"}


def test_a_prompt_naming_a_missing_checkpoint_is_rejected_and_the_server_keeps_serving(server):
    with pytest.raises(PromptError, match="ckpt_name") as rejected:
        server.run(text_to_image("no_such_model.safetensors", "e2e/bad"))
    assert "no_such_model.safetensors" in str(rejected.value)
    assert "comfyui_version" in server.get("/system_stats")["system"]

"""The motion-model nodes in a real server: listed, sampled over HTTP, and bad input reported without harm."""

import pytest

from animatelcm.tests.fixtures.server import PromptError

from .conftest import CHECKPOINT, LORA, MOTION_MODEL, NOT_A_MOTION_MODULE

NODE_IDS = {"ALCM_LoadMotionModel": ["model_name"],
            "ALCM_ApplyMotionModel": ["model", "motion_model", "motion_scale", "beta_schedule"]}


def animated_prompt(frames=16, motion_model=MOTION_MODEL, prefix="e2e/frames"):
    """Checkpoint + AnimateLCM LoRA (stock LoraLoader) + motion model, 4 steps, cfg 1, frames saved as images."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "lora": {"class_type": "LoraLoader", "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1], "lora_name": LORA,
                                                        "strength_model": 1.0, "strength_clip": 1.0}},
        "motion": {"class_type": "ALCM_LoadMotionModel", "inputs": {"model_name": motion_model}},
        "apply": {"class_type": "ALCM_ApplyMotionModel", "inputs": {
            "model": ["lora", 0], "motion_model": ["motion", 0], "motion_scale": 1.0, "beta_schedule": "auto"}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["lora", 1], "text": "a boat on a stormy sea"}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["lora", 1], "text": ""}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": frames}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["apply", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "seed": 3, "steps": 4, "cfg": 1.0, "sampler_name": "lcm", "scheduler": "simple", "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}},
    }


def test_object_info_lists_the_pack_nodes_with_their_inputs(server):
    info = server.get("/object_info")
    for node_id, inputs in NODE_IDS.items():
        assert node_id in info, f"{node_id} missing from /object_info"
        declared = {**info[node_id]["input"]["required"], **info[node_id]["input"].get("optional", {})}
        assert list(declared) == inputs
    assert info["ALCM_LoadMotionModel"]["input"]["required"]["model_name"][1]["options"] == sorted(
        [MOTION_MODEL, NOT_A_MOTION_MODULE])
    assert info["ALCM_ApplyMotionModel"]["input"]["required"]["beta_schedule"][1]["options"] == [
        "auto", "linear", "scaled_linear (SD1.5)"]


def test_sixteen_frames_sample_with_the_motion_model_over_http(server):
    history = server.run(animated_prompt())
    images = history["outputs"]["save"]["images"]
    assert len(images) == 16
    assert all((server.output_dir / i["subfolder"] / i["filename"]).is_file() for i in images)
    progress = [e["data"] for e in server.events if e["type"] == "progress"]
    assert progress and progress[-1]["value"] == progress[-1]["max"] == 4


def test_a_file_that_is_not_a_motion_module_is_reported_and_the_server_keeps_serving(server):
    with pytest.raises(PromptError, match=f"{NOT_A_MOTION_MODULE}: .*LoRA"):
        server.run(animated_prompt(motion_model=NOT_A_MOTION_MODULE))
    assert server.run(animated_prompt(frames=2, prefix="e2e/after_error"))["status"]["status_str"] == "success"


def test_more_frames_than_the_motion_model_covers_is_refused_with_a_hint(server):
    with pytest.raises(PromptError, match="65 frames exceed the 64 frames .* context windows"):
        server.run(animated_prompt(frames=65))

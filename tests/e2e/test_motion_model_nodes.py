"""The motion-model nodes in a real server: listed, sampled over HTTP, and bad input reported without harm."""

import pytest

from animatelcm.devkit.server import PromptError

import numpy as np
from PIL import Image

from .conftest import (CHECKPOINT, I2V_MOTION_MODEL, LORA, MOTION_MODEL, NOT_A_MOTION_MODULE, SECOND_MOTION_MODEL,
                       SIZE, SPARSECTRL_NAMES)

NODE_IDS = {"ALCM_LoadMotionModel": ["model_name"],
            "ALCM_ApplyMotionModel": ["model", "motion_model", "motion_scale", "beta_schedule", "motion_lora",
                                      "effect_multival", "scale_multival", "start_percent", "end_percent"],
            "ALCM_ValueSchedule": ["schedule", "frame_count", "interpolation", "mask"],
            "ALCM_LoadMotionLoRA": ["lora_name", "strength", "prev_motion_lora"],
            "ALCM_LoadSparseCtrl": ["sparsectrl_name"],
            "ALCM_ApplySparseCtrl": ["positive", "negative", "sparsectrl", "images", "frame_indices", "strength",
                                     "start_percent", "end_percent", "vae"]}


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
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": frames}},
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
        [MOTION_MODEL, I2V_MOTION_MODEL, NOT_A_MOTION_MODULE, SECOND_MOTION_MODEL])
    assert info["ALCM_ApplyMotionModel"]["input"]["required"]["beta_schedule"][1]["options"] == [
        "auto", "linear", "scaled_linear (SD1.5)", "scaled_linear + LCM, 50-point grid (community)"]
    assert SPARSECTRL_NAMES["rgb"] in info["ALCM_LoadSparseCtrl"]["input"]["required"]["sparsectrl_name"][1]["options"]


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


def test_two_motion_models_on_one_checkpoint_in_one_prompt(server):
    """Two clones of one loaded checkpoint, each with its own motion model, sampled one after the other."""
    prompt = animated_prompt(frames=8, prefix="e2e/first")
    prompt["motion2"] = {"class_type": "ALCM_LoadMotionModel", "inputs": {"model_name": SECOND_MOTION_MODEL}}
    prompt["apply2"] = {"class_type": "ALCM_ApplyMotionModel", "inputs": {
        "model": ["ckpt", 0], "motion_model": ["motion2", 0], "motion_scale": 1.0, "beta_schedule": "auto"}}
    prompt["sample"] = {"class_type": "ALCM_KSampler", "inputs": {
        "model": ["apply", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
        "seed": 5, "steps": 2, "cfg": 1.0, "denoise": 1.0}}
    prompt["sample2"] = dict(prompt["sample"], inputs=dict(prompt["sample"]["inputs"], model=["apply2", 0]))
    prompt["decode2"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample2", 0], "vae": ["ckpt", 2]}}
    prompt["save2"] = {"class_type": "SaveImage", "inputs": {"images": ["decode2", 0], "filename_prefix": "e2e/second"}}
    history = server.run(prompt)

    def frames(node):
        return [np.array(Image.open(server.output_dir / i["subfolder"] / i["filename"]))
                for i in history["outputs"][node]["images"]]

    first, second = frames("save"), frames("save2")
    assert len(first) == len(second) == 8
    assert not any(np.array_equal(a, b) for a, b in zip(first, second))


def test_a_context_length_of_0_is_refused_at_validation_with_the_nodes_range(server):
    """ComfyUI skips its min/max check for inputs a node's validate_inputs receives: the node checks them itself."""
    prompt = animated_prompt(frames=20, prefix="e2e/bad_context")
    prompt["context"] = {"class_type": "ALCM_ContextOptions", "inputs": {
        "model": ["apply", 0], "context_length": 0, "context_overlap": 0, "context_stride": 1, "schedule": "uniform",
        "fuse_method": "pyramid"}}
    prompt["sample"]["inputs"]["model"] = ["context", 0]
    with pytest.raises(PromptError, match="ALCM_ContextOptions: context_length is 0, outside its range 2 to 64"):
        server.queue(prompt, "e2e")  # refused when queued (HTTP 400), before anything runs

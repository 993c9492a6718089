"""What ComfyUI sees when it loads the pack: the model folder and the node list."""

import asyncio
import os

import folder_paths


def test_motion_model_folder_is_shared_and_lists_checkpoint_files(tmp_path, monkeypatch):
    extra = tmp_path / "from_extra_model_paths"
    extra.mkdir()
    (extra / "AnimateLCM_sd15_t2v.ckpt").write_bytes(b"")
    (extra / "notes.txt").write_text("not a model")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "animatediff_models", ([str(extra)], set()))

    from animatelcm.nodes.types import register_model_folder

    register_model_folder("animatediff_models")
    paths, extensions = folder_paths.folder_names_and_paths["animatediff_models"]
    assert paths == [str(extra), os.path.join(folder_paths.models_dir, "animatediff_models")]
    assert {".ckpt", ".safetensors", ".pt", ".pth"} <= extensions
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})  # restored after: the folder goes with tmp_path
    assert folder_paths.get_filename_list("animatediff_models") == ["AnimateLCM_sd15_t2v.ckpt"]


def test_entrypoint_returns_the_extension_with_v3_nodes():
    import animatelcm

    extension = asyncio.run(animatelcm.comfy_entrypoint())
    schemas = [node.GET_SCHEMA() for node in asyncio.run(extension.get_node_list())]
    assert {schema.node_id for schema in schemas} == {"ALCM_LoadMotionModel", "ALCM_ApplyMotionModel",
                                                      "ALCM_Scheduler", "ALCM_Sampler", "ALCM_KSampler",
                                                      "ALCM_SaveVideo", "ALCM_LoadVideo", "ALCM_ContextOptions",
                                                      "ALCM_PromptSchedule", "ALCM_ApplyVideoControlNet",
                                                      "ALCM_ImageToVideo", "ALCM_ColorMatch",
                                                      "ALCM_LoadSVDUNet", "ALCM_SVDScheduler",
                                                      "ALCM_LoadSparseCtrl", "ALCM_ApplySparseCtrl", "ALCM_FreeInit",
                                                      "ALCM_LoadMotionLoRA", "ALCM_ValueSchedule",
                                                      "ALCM_LoadImageSequence", "ALCM_LoadVideoLatent"}
    assert all(schema.category.startswith("AnimateLCM") for schema in schemas)
    import folder_paths  # the folders other packs use for motion modules and motion LoRAs are registered

    assert {"animatediff_models", "animatediff_motion_lora"} <= set(folder_paths.folder_names_and_paths)

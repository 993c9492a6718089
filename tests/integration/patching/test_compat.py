"""patching/compat.py on the running ComfyUI: each difference between 0.3.75 and 0.33.0 resolved by what core offers."""

import inspect

import torch

import comfy.context_windows
import comfy.model_management
import comfy.model_patcher
import comfy.sd

from animatelcm.patching import compat
from animatelcm.patching.motion_injection import MotionModuleLayer, attach_motion_model, load_motion_model_file
from animatelcm.nodes.sampling import KSampler
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model


def motion_file():
    return mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)


def motion_layers(unet):
    return [m for m in unet.modules() if isinstance(m, MotionModuleLayer)]


def test_a_context_window_carries_its_clip_length():
    window = compat.context_window([3, 4, 5], 20)
    assert isinstance(window, comfy.context_windows.IndexListContextWindow)
    assert (window.index_list, window.total_frames) == ([3, 4, 5], 20)
    assert torch.equal(window.get_tensor(torch.arange(20)), torch.tensor([3, 4, 5]))


def test_the_motion_model_gets_the_patcher_core_would_use():
    path = motion_file()
    expected = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    assert type(load_motion_model_file(str(path), path.name).patcher) is expected


def test_the_patcher_class_is_looked_up_when_loading(monkeypatch):
    """ComfyUI's start-up replaces CoreModelPatcher with the dynamic-VRAM patcher where that is enabled (0.12.0+,
    NVIDIA): a class captured at import would miss that."""

    class Replacement(comfy.model_patcher.ModelPatcher):
        pass

    monkeypatch.setattr(comfy.model_patcher, "CoreModelPatcher", Replacement, raising=False)
    path = motion_file()
    assert type(load_motion_model_file(str(path), path.name).patcher) is Replacement


def test_loading_and_unloading_leave_no_motion_layers_and_no_loaded_models():
    comfy.model_management.unload_all_models()
    path = motion_file()
    motion = load_motion_model_file(str(path), path.name)
    base = tiny_sd15_model()
    animated = attach_motion_model(base, motion, 1.0)
    context = [[torch.zeros(1, 77, 768), {}]]
    KSampler.execute(animated, context, context, {"samples": torch.zeros(2, 4, 8, 8)}, 0, 1, 1.0, 1.0)
    loaded = [m.model for m in comfy.model_management.current_loaded_models]
    assert motion.patcher in loaded and len(motion_layers(base.model.diffusion_model)) == 21
    comfy.model_management.unload_all_models()
    assert comfy.model_management.current_loaded_models == []
    assert motion_layers(base.model.diffusion_model) == []


def test_the_trainer_loads_checkpoints_without_dynamic_vram(monkeypatch):
    seen = {}
    real = comfy.sd.load_checkpoint_guess_config

    def spy(path, *args, **kwargs):
        seen.update(kwargs)
        return ("model", "clip", "vae", "clip_vision")

    monkeypatch.setattr(comfy.sd, "load_checkpoint_guess_config", spy)
    monkeypatch.setattr(spy, "__signature__", inspect.signature(real), raising=False)
    assert compat.load_checkpoint_static("x.safetensors") == ("model", "clip", "vae")
    has_dynamic = "disable_dynamic" in inspect.signature(real).parameters
    assert seen == {"output_vae": True, "output_clip": True, **({"disable_dynamic": True} if has_dynamic else {})}


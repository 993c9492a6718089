"""Load a motion model, apply it, sample and unload, several times over: nothing may be left behind.

A run that keeps its motion model alive (a reference from a cache, a wrapper, a patch left on the shared UNet, a
cycle the garbage collector cannot see through) grows the process by at least one motion model per run, so the RSS
growth over the measured runs must stay below the size of one motion model. Each run also checks that the UNet is
back to its original blocks and that the run's MotionModel and its patcher are really freed.
"""

import gc
import logging
import weakref

import psutil
import torch

import comfy.model_management
import comfy.sample

from animatelcm.motion_models.motion_module import MotionModel
from animatelcm.patching.motion_injection import MotionModuleLayer, attach_motion_model, load_motion_model_file
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model

MODEL_CHANNELS = 64
WIDTH = (64, 128, 256, 256)  # motion module channels matching a UNet of MODEL_CHANNELS
FRAMES = 8
WARM_UP_RUNS = 2
MEASURED_RUNS = 5


def unet_structure(model):
    unet = model.model.diffusion_model
    return [[type(m).__name__ for m in block] for block in (*unet.input_blocks, unet.middle_block, *unet.output_blocks)]


def live_motion_models() -> int:
    gc.collect()
    return sum(issubclass(type(o), MotionModel) for o in gc.get_objects())


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def run_once(base_model, path, seed):
    """load file -> attach -> sample 2 steps with cfg 2 -> unload; returns weak references to what the run made."""
    motion = load_motion_model_file(str(path), path.name)
    animated = attach_motion_model(base_model, motion, 1.0, "linear")
    latent = torch.zeros(FRAMES, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    gen = torch.Generator().manual_seed(seed)
    cond, uncond = ([[torch.randn(1, 77, 768, generator=gen), {}]] for _ in range(2))
    out = comfy.sample.sample(animated, noise, 2, 2.0, "euler", "simple", cond, uncond, latent, disable_pbar=True,
                              seed=seed)
    assert torch.isfinite(out).all()
    assert sum(isinstance(m, MotionModuleLayer) for m in base_model.model.diffusion_model.modules()) == 21
    refs = {"MotionModel": weakref.ref(motion.loaded.model), "motion patcher": weakref.ref(motion.patcher),
            "MODEL clone": weakref.ref(animated)}
    size = sum(t.numel() * t.element_size() for t in (*motion.loaded.model.parameters(),
                                                      *motion.loaded.model.buffers()))
    del motion, animated, out
    comfy.model_management.unload_all_models()
    gc.collect()
    return refs, size


def test_repeated_load_apply_sample_unload_leaves_nothing_behind(caplog):
    """Two warm-up runs, then five measured ones: RSS (after unload + gc) grows by less than half a motion model
    from the end of run 2 to the end of run 7, where a leak of one motion model per run would add five."""
    base_model = tiny_sd15_model(MODEL_CHANNELS)
    path = mm.motion_module_file("animatelcm_t2v", WIDTH, dtype=torch.float32)
    structure = unet_structure(base_model)
    comfy.model_management.unload_all_models()
    already_alive = live_motion_models()  # held by other tests' fixtures, if any

    caplog.set_level(logging.INFO)
    after_run = []
    for run in range(WARM_UP_RUNS + MEASURED_RUNS):
        refs, motion_bytes = run_once(base_model, path, seed=run)
        # no stray modules: the shared UNet has its original blocks again, nothing of this run is alive or loaded
        assert unet_structure(base_model) == structure
        assert not any(isinstance(m, MotionModuleLayer) for m in base_model.model.diffusion_model.modules())
        assert {name: ref() is None for name, ref in refs.items()} == dict.fromkeys(refs, True)
        assert comfy.model_management.loaded_models() == []
        assert live_motion_models() == already_alive
        after_run.append(rss())

    growth = after_run[-1] - after_run[WARM_UP_RUNS - 1]
    bound = motion_bytes // 2
    print(f"motion model {motion_bytes / 2**20:.1f} MiB; RSS after runs 1-{len(after_run)} (MiB): "
          f"{', '.join(f'{m / 2**20:.1f}' for m in after_run)}; growth from run {WARM_UP_RUNS} to run "
          f"{len(after_run)} {growth / 2**20:+.2f} MiB, bound {bound / 2**20:.1f} MiB")
    assert growth < bound
    # ComfyUI's own warning when a patcher died while its model was still alive (a reference cycle)
    assert "Requested to load MotionModel" in caplog.text and "Potential memory leak" not in caplog.text

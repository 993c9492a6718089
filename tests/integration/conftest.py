"""Integration tier: ComfyUI imported into the test process, on the CPU."""

import pytest

from animatelcm.devkit.comfy import import_comfyui

import_comfyui()


@pytest.fixture(scope="session")
def sd15_checkpoint_path():
    from animatelcm.devkit.sd15_checkpoint import checkpoint_file

    return checkpoint_file()


@pytest.fixture(scope="session")
def sd15(sd15_checkpoint_path):
    """(MODEL, CLIP, VAE) of the full-size fixture checkpoint, loaded once by ComfyUI's own loader."""
    import comfy.sd

    return comfy.sd.load_checkpoint_guess_config(str(sd15_checkpoint_path), output_vae=True, output_clip=True)[:3]

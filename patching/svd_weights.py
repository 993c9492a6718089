"""AnimateLCM-SVD-xt: the fine-tuned SVD-xt UNet (diffusers layout) put into the stock SVD-xt MODEL.

The weights replace the MODEL's UNet weights through ComfyUI's weight patches ("set" patches on a clone, applied
when the model is loaded and undone when it is unloaded), so the input MODEL is untouched, LoRAs still stack on
top and no converted copy is written to disk.
"""

from __future__ import annotations

import torch

import comfy.model_base
import comfy.model_patcher
import comfy.utils

from ..motion_models.checkpoint import unreadable_file_message
from ..motion_models.svd_unet import SVDUNetFormatError, convert_svd_unet, svd_key_map

UNET_PREFIX = "diffusion_model."  # the UNet's keys in the MODEL's state dict
# Patches are stored in the MODEL's weight dtype when that is one of these and smaller than the file's (an fp32
# file for an fp16 MODEL): the result is the same, since the weight is rounded to the MODEL's dtype anyway.
_CASTABLE = (torch.float16, torch.bfloat16, torch.float32)


def require_svd(model: comfy.model_patcher.ModelPatcher, node_id: str, fix: str) -> None:
    """Refuse a MODEL that is not ComfyUI's SVD image-to-video model (SV3D has the architecture, not the use), saying
    what was connected and `fix`."""
    base = getattr(model, "model", None)
    if isinstance(base, comfy.model_base.SVD_img2vid) and not isinstance(base, comfy.model_base.SV3D_u):
        return
    # The model class is generic for many families (BaseModel); the config names the family (SD15, SDXL...).
    got = type(model).__name__ if base is None else \
        f"{type(base).__name__} ({type(getattr(base, 'model_config', None)).__name__})"
    raise ValueError(f"{node_id}: the MODEL is {got}, not Stable Video Diffusion: {fix}")


def _patch_value(tensor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if (weight.dtype in _CASTABLE and tensor.dtype in _CASTABLE
            and weight.dtype.itemsize < tensor.dtype.itemsize):
        return tensor.to(weight.dtype)
    return tensor


def load_svd_unet(model: comfy.model_patcher.ModelPatcher, path: str, name: str) -> comfy.model_patcher.ModelPatcher:
    """A clone of the SVD `model` whose UNet weights are those of the diffusers-layout file at `path`.

    Checks, in order, before anything is converted or patched: the MODEL is SVD without weight patches on its UNet
    (they would be overwritten), the file can be read, it is a diffusers SVD UNet, and every key and shape fits the
    MODEL's own UNet.
    """
    require_svd(model, "ALCM_LoadSVDUNet", "the AnimateLCM-SVD-xt UNet replaces the UNet of SVD-xt. Load "
                "svd_xt.safetensors with Image Only Checkpoint Loader and connect its MODEL output here")
    if patched_keys := sorted(k for k in model.patches if k.startswith(UNET_PREFIX)):
        raise ValueError(f"the MODEL already carries weight patches on {len(patched_keys)} UNet weights (a LoRA, or "
                         f"another UNet loaded into it, e.g. {patched_keys[0]}): the AnimateLCM-SVD-xt weights "
                         "would replace them. Connect LoRA loaders after this node, to the MODEL it outputs")
    try:
        state_dict = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as error:  # damaged bytes fail in many ways (SafetensorError, UnpicklingError, EOFError)
        raise SVDUNetFormatError(unreadable_file_message(name, error)) from error
    weights = model.model_state_dict(filter_prefix=UNET_PREFIX)
    expected = {k.removeprefix(UNET_PREFIX): tuple(v.shape) for k, v in weights.items()}
    key_map = svd_key_map(comfy.utils.unet_to_diffusers(model.model.model_config.unet_config))
    converted = convert_svd_unet(state_dict, key_map, expected, name)

    patched = model.clone()
    patches = {UNET_PREFIX + k: ("set", (_patch_value(v, weights[UNET_PREFIX + k]),)) for k, v in converted.items()}
    applied = patched.add_patches(patches, 1.0)
    if len(applied) != len(patches):  # cannot happen after the check above; never return a half-patched UNet
        raise RuntimeError(f"{name}: only {len(applied)} of {len(patches)} UNet weights could be patched")
    return patched

"""The AnimateLCM-SVD-xt UNet: diffusers key names -> ComfyUI's SGM VideoUNet names, and what is not such a file.

The released file is the SVD-xt UNet alone, fine-tuned, saved by diffusers' `UNetSpatioTemporalConditionModel`
(docs/reference.md, section 5). ComfyUI runs SVD-xt as an `openaimodel.UNetModel` with
`use_temporal_resblock` / `use_temporal_attention` (`VideoResBlock`, `SpatialVideoTransformer`), whose keys follow
the original SGM code. The spatial part of the two layouts is the SD UNet's, which ComfyUI already maps
(`comfy.utils.unet_to_diffusers(unet_config)`: diffusers name -> LDM name); `svd_key_map` takes that map as an
argument, so this module needs no ComfyUI, and adds the temporal parts:

- resnets: diffusers `resnets.N.spatial_res_block.*` is the SD resnet, `resnets.N.temporal_res_block.*` is the
  VideoResBlock's `time_stack.*` (same parameter names, 3-D convs, no shortcut), `resnets.N.time_mixer.mix_factor`;
- attentions: `temporal_transformer_blocks.T.*` is the SpatialVideoTransformer's `time_stack.T.*` (the spatial
  block's parameters plus `norm_in` and `ff_in`), `time_pos_embed.linear_1/2` is `time_pos_embed.0/2`,
  `time_mixer.mix_factor`;
- conv_in, time_embedding, add_embedding (the fps / motion bucket / augmentation ids, `label_emb.0` in ComfyUI),
  the down/upsamplers and conv_norm_out/conv_out come from ComfyUI's map unchanged (`time_proj` and
  `add_time_proj` have no weights).

Functions take the file's name for their messages, which start with it and say what the file is, what was
expected and where it goes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .checkpoint import LORA_KEY, SHOWN, quote_keys

# diffusers' UNetSpatioTemporalConditionModel config of SVD-xt (its config.json; also the class defaults).
SVD_XT_CONFIG = {
    "sample_size": 96,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                         "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                       "CrossAttnUpBlockSpatioTemporal"),
    "block_out_channels": (320, 640, 1280, 1280),
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    "num_attention_heads": (5, 10, 20, 20),
    "num_frames": 25,
}
EXAMPLE_KEY = "down_blocks.0.resnets.0.spatial_res_block.conv1.weight"
WHERE_IT_GOES = "models/diffusion_models (or models/unet)"

_RESNET = re.compile(r"^((?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.resnets\.\d+\.)(.+)$")
_LDM_RESNET = re.compile(r"^((?:input_blocks\.\d+\.0|middle_block\.\d+|output_blocks\.\d+\.0)\.)(.+)$")
_ATTENTION = re.compile(r"^((?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.)(.+)$")
_LDM_ATTENTION = re.compile(r"^((?:input_blocks\.\d+|middle_block|output_blocks\.\d+)\.1\.)(.+)$")
_BLOCK = re.compile(r"^transformer_blocks\.(\d+)\.(.+)$")
# What a temporal transformer block has beyond a spatial one (the feed-forward before attention, `ff_in=True`).
_TEMPORAL_BLOCK_EXTRA = ("norm_in.weight", "norm_in.bias", "ff_in.net.0.proj.weight", "ff_in.net.0.proj.bias",
                         "ff_in.net.2.weight", "ff_in.net.2.bias")
_TIME_POS_EMBED = {"linear_1": "0", "linear_2": "2"}
_FAMILIES = {768: "an SD1.5 UNet", 1024: "an SD2.x UNet", 1280: "an SDXL refiner UNet", 2048: "an SDXL UNet"}


class SVDUNetFormatError(ValueError):
    """The file is not the AnimateLCM-SVD-xt UNet this MODEL can take; the message says what was expected and found."""


def svd_key_map(spatial_map: Mapping[str, str]) -> dict[str, str]:
    """diffusers UNetSpatioTemporalConditionModel name -> ComfyUI VideoUNet name, for the UNet config that
    `spatial_map` (ComfyUI's `unet_to_diffusers(unet_config)`) was built from.

    The result may name parameters the model lacks (the SD map lists a shortcut conv for every resnet);
    `convert_svd_unet` checks against the MODEL's own keys. `class_embedding.*` is dropped: ComfyUI maps it and
    `add_embedding.*` to the same `label_emb.0.*`, and SVD has only the latter.
    """
    key_map: dict[str, str] = {}
    attentions: dict[str, str] = {}  # diffusers attention prefix -> SGM prefix
    blocks: dict[tuple[str, str], set[str]] = {}  # (diffusers, SGM) attention prefixes -> "T.param" of its blocks
    for diffusers, sgm in spatial_map.items():
        if diffusers.startswith("class_embedding."):
            continue
        if (resnet := _RESNET.match(diffusers)) and (ldm := _LDM_RESNET.match(sgm)):
            (prefix, param), (sgm_prefix, sgm_param) = resnet.groups(), ldm.groups()
            key_map[f"{prefix}spatial_res_block.{param}"] = sgm
            if not param.startswith("conv_shortcut."):  # the temporal resnet keeps its channel count
                key_map[f"{prefix}temporal_res_block.{param}"] = f"{sgm_prefix}time_stack.{sgm_param}"
            key_map[f"{prefix}time_mixer.mix_factor"] = f"{sgm_prefix}time_mixer.mix_factor"
        elif (attention := _ATTENTION.match(diffusers)) and (ldm := _LDM_ATTENTION.match(sgm)):
            (prefix, param), (sgm_prefix, _) = attention.groups(), ldm.groups()
            key_map[diffusers] = sgm
            attentions[prefix] = sgm_prefix
            if block := _BLOCK.match(param):
                blocks.setdefault((prefix, sgm_prefix), set()).add(f"{block.group(1)}.{block.group(2)}")
        else:
            key_map[diffusers] = sgm
    for (prefix, sgm_prefix), params in blocks.items():
        depths = {param.split(".", 1)[0] for param in params}
        params = params | {f"{t}.{extra}" for t in depths for extra in _TEMPORAL_BLOCK_EXTRA}
        for param in params:
            key_map[f"{prefix}temporal_transformer_blocks.{param}"] = f"{sgm_prefix}time_stack.{param}"
    for prefix, sgm_prefix in attentions.items():
        for linear, index in _TIME_POS_EMBED.items():
            for kind in ("weight", "bias"):
                key_map[f"{prefix}time_pos_embed.{linear}.{kind}"] = f"{sgm_prefix}time_pos_embed.{index}.{kind}"
        key_map[f"{prefix}time_mixer.mix_factor"] = f"{sgm_prefix}time_mixer.mix_factor"
    return key_map


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _family(state_dict: Mapping[str, torch.Tensor]) -> str:
    """"an SD1.5 UNet", "an SDXL UNet"...: the family, from the cross-attention width of a UNet's attention layers."""
    widths = [v.shape[1] for k, v in sorted(state_dict.items())
              if k.endswith("attn2.to_k.weight") and v.ndim == 2 and "time_stack" not in k and "temporal" not in k]
    if not widths:
        return "a UNet without cross-attention"
    return _FAMILIES.get(widths[0], f"a UNet with cross-attention width {widths[0]}")


def identify_svd_unet(state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    """Refuse, by its keys, a file that is not a diffusers-layout SVD UNet: an empty file, a LoRA, a full checkpoint,
    a motion module, an SD1.5/SD2/SDXL UNet (diffusers or LDM names), an SVD UNet already in ComfyUI's names."""
    expected = (f"expected the AnimateLCM-SVD-xt UNet (diffusers UNetSpatioTemporalConditionModel keys such as "
                f"{EXAMPLE_KEY}) in {WHERE_IT_GOES}")
    if not state_dict:
        raise SVDUNetFormatError(f"{name}: found no tensors at all; {expected}")
    if lora := [k for k in state_dict if LORA_KEY.search(k)]:
        raise SVDUNetFormatError(f"{name}: this is a LoRA (keys such as {quote_keys(lora)}), not a UNet; {expected}. "
                                 "Put LoRAs in models/loras and apply them with a LoRA loader")
    if full := [k for k in state_dict if k.startswith(("model.diffusion_model.", "first_stage_model.",
                                                        "conditioner.", "cond_stage_model."))]:
        if any(".time_stack." in k for k in full):
            raise SVDUNetFormatError(
                f"{name}: this is a full SVD checkpoint (keys such as {quote_keys(full)}), such as svd_xt.safetensors, "
                f"not the AnimateLCM-SVD-xt UNet alone; {expected}. Put the SVD-xt checkpoint in models/checkpoints "
                "and load it with Image Only Checkpoint Loader: that gives the MODEL this node takes")
        raise SVDUNetFormatError(f"{name}: this is a full Stable Diffusion checkpoint (keys such as {quote_keys(full)}), "
                                 f"not the AnimateLCM-SVD-xt UNet; {expected}")
    if motion := [k for k in state_dict if ".motion_modules." in k or "temporal_attentions" in k]:
        raise SVDUNetFormatError(
            f"{name}: this is a motion module (AnimateDiff/AnimateLCM keys such as {quote_keys(motion)}), not the "
            f"AnimateLCM-SVD-xt UNet; {expected}. Put motion modules in models/animatediff_models and load them "
            "with Load AnimateLCM Motion Model, for an SD1.5 MODEL")
    if "input_blocks.0.0.weight" in state_dict:
        if any(".time_stack." in k for k in state_dict):
            raise SVDUNetFormatError(
                f"{name}: this is an SVD UNet already in ComfyUI's names (keys such as input_blocks.0.0.weight), "
                f"not the diffusers-layout AnimateLCM-SVD-xt file this node converts; load it with Load Diffusion "
                "Model instead")
        raise SVDUNetFormatError(f"{name}: this is {_family(state_dict)} with LDM names (keys such as "
                                 f"input_blocks.0.0.weight), not the AnimateLCM-SVD-xt UNet; {expected}")
    if not any(".spatial_res_block." in k for k in state_dict):
        if resnets := [k for k in state_dict if _RESNET.match(k)]:
            raise SVDUNetFormatError(f"{name}: this is {_family(state_dict)} in diffusers layout (keys such as "
                                     f"{quote_keys(resnets)}, no temporal layers), not the AnimateLCM-SVD-xt UNet; "
                                     f"{expected}")
        raise SVDUNetFormatError(f"{name}: {expected}, found keys such as {quote_keys(state_dict)}")


def convert_svd_unet(state_dict: Mapping[str, torch.Tensor], key_map: Mapping[str, str],
                     expected: Mapping[str, tuple[int, ...]], name: str) -> dict[str, torch.Tensor]:
    """The file's tensors under ComfyUI's names, after checking every key and shape against `expected` (the
    MODEL's own UNet keys -> shapes, without the `diffusion_model.` prefix). Reads no tensor values.

    Raises SVDUNetFormatError for a file that is not a diffusers SVD UNet (`identify_svd_unet`) and for missing,
    unexpected or mis-shaped keys; messages quote the file's (diffusers) key names.
    """
    identify_svd_unet(state_dict, name)
    inverse = {sgm: diffusers for diffusers, sgm in key_map.items()}
    converted = {key_map[k]: v for k, v in state_dict.items() if key_map.get(k) in expected}
    problems = []
    if missing := expected.keys() - converted.keys():
        problems.append(f"{_count(len(missing), 'missing key')} ({quote_keys(inverse.get(k, k) for k in missing)})")
    if unexpected := [k for k in state_dict if key_map.get(k) not in expected]:
        problems.append(f"{_count(len(unexpected), 'unexpected key')} ({quote_keys(unexpected)})")
    if wrong := sorted(k for k, v in converted.items() if tuple(v.shape) != tuple(expected[k])):
        shapes = ", ".join(f"{inverse[k]} expected {list(expected[k])} found {list(converted[k].shape)}"
                           for k in wrong[:SHOWN])
        more = f" and {len(wrong) - SHOWN} more" if len(wrong) > SHOWN else ""
        problems.append(f"{_count(len(wrong), 'key')} with the wrong shape ({shapes}{more})")
    if problems:
        raise SVDUNetFormatError(
            f"{name}: not an AnimateLCM-SVD-xt UNet that fits this SVD MODEL: " + "; ".join(problems) + ". The file "
            "is incomplete or another model (download AnimateLCM-SVD-xt again), or the MODEL is not SVD-xt "
            "(load svd_xt.safetensors with Image Only Checkpoint Loader)")
    return converted

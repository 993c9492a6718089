"""Motion LoRAs: low-rank updates of a motion module's temporal layers (AnimateDiff v2's camera LoRAs, MotionDirector's
temporal LoRAs), read into one weight difference per layer.

Both store `<module path>.processor.<last part>_lora.{down,up}.weight` (down [rank, in], up [out, rank], no alpha):
AnimateDiff names the attention projections `attention_blocks.N.processor.to_q_lora` (the output projection
`to_out_lora`, for the module `to_out.0`), MotionDirector every Linear of the temporal block by its last path part
(`to_out.processor.0_lora`, `ff.net.0.processor.proj_lora`). The merged weight is W + strength · up @ down.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

LORA_KEY = re.compile(r"^(?P<path>.+)\.processor\.(?P<last>[^.]+)_lora\.(?P<side>up|down)\.weight$")
SD_LORA_KEY = re.compile(r"^(lora_unet_|lora_te\d?_|lora_te_|unet\.|text_encoder\.)|\.lora_(up|down)\.weight$")
SHOWN = 3


class MotionLoRAError(ValueError):
    """A file that is not a motion LoRA for this motion model; the message names the cause and the fix."""


def _quote(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:SHOWN]) + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def lora_pairs(state_dict: Mapping[str, torch.Tensor], name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{temporal module path: (up, down)}, refusing files that are not temporal motion LoRAs."""
    sides: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        match = LORA_KEY.match(key)
        if match:
            module = f"{match['path']}.{match['last']}"
            sides.setdefault(module + (".0" if module.endswith(".to_out") else ""), {})[match["side"]] = tensor
    if not sides:
        if sd_keys := [k for k in state_dict if SD_LORA_KEY.search(k)]:
            raise MotionLoRAError(f"{name}: this is a LoRA for the image model (keys such as {_quote(sd_keys)}), not "
                                  f"a motion LoRA: put it in models/loras and load it with a LoRA loader")
        raise MotionLoRAError(f"{name}: no motion-LoRA keys (`...temporal_transformer...processor.to_q_lora.down."
                              f"weight`) among {_quote(state_dict) or 'no keys at all'}: expected an AnimateDiff or "
                              f"MotionDirector motion LoRA")
    temporal = {module: pair for module, pair in sides.items() if "temporal" in module}
    if not temporal:
        raise MotionLoRAError(f"{name}: a spatial LoRA (its layers, such as {_quote(sides)}, belong to the image "
                              f"model, not the motion module): load MotionDirector's spatial LoRAs with a LoRA loader")
    if incomplete := [m for m, pair in temporal.items() if set(pair) != {"up", "down"}]:
        raise MotionLoRAError(f"{name}: {_quote(incomplete)} lack their up or down matrix: the file is incomplete")
    return {module: (pair["up"], pair["down"]) for module, pair in temporal.items()}


def motion_lora_diffs(state_dict: Mapping[str, torch.Tensor], weight_shapes: Mapping[str, torch.Size],
                      name: str) -> dict[str, torch.Tensor]:
    """{motion-model weight key: up @ down in float32} for the motion model whose weights have `weight_shapes`.

    Mid-block layers are skipped for a motion model without a mid block (AnimateDiff v1), as other packs do; any
    other layer the model lacks, or a shape it does not have, means a LoRA for another motion model."""
    diffs = {}
    for module, (up, down) in lora_pairs(state_dict, name).items():
        key = module + ".weight"
        if key not in weight_shapes:
            if module.startswith("mid_block.") and not any(k.startswith("mid_block.") for k in weight_shapes):
                continue
            raise MotionLoRAError(f"{name}: the motion model has no layer {key}: this LoRA is for another motion "
                                  f"model (an SD1.5 AnimateDiff/AnimateLCM one is expected)")
        diff = up.float() @ down.float()
        if diff.shape != weight_shapes[key]:
            raise MotionLoRAError(f"{name}: {key} would change by {tuple(diff.shape)} but is "
                                  f"{tuple(weight_shapes[key])}: this LoRA is for a motion model of another width "
                                  f"(SDXL or another SD1.5 release)")
        diffs[key] = diff
    return diffs

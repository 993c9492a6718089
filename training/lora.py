"""The spatial LoRA of stage 1: a low-rank update W + scale * (alpha / rank) * up @ down on the UNet's layers, added
as a torch parametrization (the UNet's modules and names stay as they are) and saved in kohya's `lora_unet_*` layout,
the layout of AnimateLCM's released LoRA, which ComfyUI's LoraLoader and other tools read.

Each update also keeps an EMA copy of its factors (the target network of stage 1), and a `scale`: 0 is the frozen
base model (the teacher), 1 the online model; the stage-2 target runs at the scale its EMA has reached.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

import comfy.utils
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

from .consistency import ema_update

TARGETS = ("transformers", "all")  # the layers of the spatial transformers; those and the ResBlocks' too


def rank_of(state_dict: dict[str, torch.Tensor], source: str = "the LoRA") -> int:
    """The rank a kohya-layout LoRA was saved with (its down factors' first dimension): a given file loads whatever
    rank the config names for new ones."""
    ranks = {value.shape[0] for key, value in state_dict.items() if key.endswith(".lora_down.weight")}
    if len(ranks) != 1:
        found = f"ranks {sorted(ranks)}" if ranks else "no lora_down weights"
        raise ValueError(f"{source} has {found}: the trainer reads a kohya-layout LoRA of one rank, as stage image "
                         "saves it")
    return ranks.pop()


class LowRankUpdate(nn.Module):
    """Parametrization of one weight: returns weight + scale * (alpha / rank) * up @ down (reshaped like a conv)."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float):
        super().__init__()
        self.rank, self.alpha, self.shape = rank, alpha, tuple(weight.shape)
        self.down = nn.Parameter(torch.empty(rank, weight[0].numel(), device=weight.device, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.up = nn.Parameter(torch.zeros(weight.shape[0], rank, device=weight.device, dtype=torch.float32))
        self.register_buffer("ema_down", self.down.detach().clone())
        self.register_buffer("ema_up", self.up.detach().clone())
        self.scale = 1.0
        self.use_ema = False

    def delta(self) -> torch.Tensor:
        down, up = (self.ema_down, self.ema_up) if self.use_ema else (self.down, self.up)
        return (up @ down) * (self.alpha / self.rank)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.scale == 0:
            return weight
        return weight + (self.scale * self.delta()).view_as(weight).to(weight.dtype)


def _targets(unet: nn.Module, which: str) -> Iterator[tuple[str, nn.Module]]:
    if which not in TARGETS:
        raise ValueError(f"LoRA targets must be one of {TARGETS}, got {which!r}")
    kinds = (SpatialTransformer, ResBlock) if which == "all" else (SpatialTransformer,)
    for name, module in unet.named_modules():
        if isinstance(module, kinds):
            for sub_name, layer in module.named_modules():
                if isinstance(layer, (nn.Linear, nn.Conv2d)):
                    yield f"{name}.{sub_name}", layer


class SpatialLoRA:
    """LoRA updates on a ComfyUI `UNetModel` of `unet_config`, keyed by their kohya names."""

    def __init__(self, unet: nn.Module, unet_config: dict, rank: int = 64, alpha: float | None = None,
                 targets: str = "transformers"):
        # diffusers name -> LDM name, as ComfyUI's own LoRA key map derives the kohya names
        kohya = {ldm[: -len(".weight")]: "lora_unet_" + diffusers[: -len(".weight")].replace(".", "_")
                 for diffusers, ldm in comfy.utils.unet_to_diffusers(unet_config).items() if ldm.endswith(".weight")}
        self.updates: dict[str, LowRankUpdate] = {}
        for name, layer in list(_targets(unet, targets)):
            if name not in kohya:
                raise ValueError(f"{name} has no kohya name for this UNet config")
            update = LowRankUpdate(layer.weight, rank, float(alpha if alpha is not None else rank))
            parametrize.register_parametrization(layer, "weight", update)
            self.updates[kohya[name]] = update
        if not self.updates:
            raise ValueError("the UNet has no layers to put a LoRA on")

    def parameters(self) -> list[nn.Parameter]:
        return [p for update in self.updates.values() for p in (update.down, update.up)]

    def update_ema(self, decay: float) -> None:
        targets = [b for u in self.updates.values() for b in (u.ema_down, u.ema_up)]
        ema_update(targets, self.parameters(), decay)

    @contextmanager
    def applied(self, scale: float = 1.0, ema: bool = False):
        """Runs the UNet with the online (or EMA) update at `scale`: 0 is the base model, whatever the factors."""
        before = [(u.scale, u.use_ema) for u in self.updates.values()]
        for update in self.updates.values():
            update.scale, update.use_ema = scale, ema
        try:
            yield
        finally:
            for update, (scale_before, ema_before) in zip(self.updates.values(), before):
                update.scale, update.use_ema = scale_before, ema_before

    def state_dict(self, ema: bool = False, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """kohya layout: `{name}.lora_down.weight` [rank, in(, kh, kw)], `{name}.lora_up.weight` [out, rank(, 1, 1)],
        `{name}.alpha`; what ComfyUI's LoraLoader multiplies as up @ down * alpha / rank."""
        out = {}
        for name, update in self.updates.items():
            down, up = (update.ema_down, update.ema_up) if ema else (update.down, update.up)
            if len(update.shape) == 4:  # conv: down is a conv of the layer's kernel, up a 1x1 conv
                down = down.reshape(update.rank, *update.shape[1:])
                up = up.reshape(*up.shape, 1, 1)
            out[f"{name}.lora_down.weight"] = down.detach().to("cpu", dtype).contiguous()
            out[f"{name}.lora_up.weight"] = up.detach().to("cpu", dtype).contiguous()
            out[f"{name}.alpha"] = torch.tensor(update.alpha, dtype=dtype)
        return out

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Loads a kohya-layout LoRA made by `state_dict` (online and EMA factors both); every key must match."""
        expected = set(self.state_dict())
        if set(state_dict) != expected:
            missing, extra = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
            raise ValueError(f"the LoRA does not fit this UNet: {len(missing)} keys missing (e.g. {missing[:2]}), "
                             f"{len(extra)} unexpected (e.g. {extra[:2]}); was it trained with the same base model, "
                             "rank and targets?")
        with torch.no_grad():
            for name, update in self.updates.items():
                down = state_dict[f"{name}.lora_down.weight"].flatten(1)
                up = state_dict[f"{name}.lora_up.weight"].flatten(1)
                rescale = float(state_dict[f"{name}.alpha"]) / update.alpha  # a file saved with another alpha
                pairs = ((update.down, update.ema_down, down), (update.up, update.ema_up, up * rescale))
                for online, ema, value in pairs:
                    online.copy_(value)
                    ema.copy_(value)

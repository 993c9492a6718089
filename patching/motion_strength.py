"""Motion strength that varies over frames, pixels and sampling steps, in AnimateDiff-Evolved's MULTIVAL terms.

A MULTIVAL is a number, or a tensor (F, H, W) (or (F, 1, 1): one value per frame) over the clip's frames. A clip longer
than F repeats the last frame's values; a mask of another size is resized to each UNet level. Two of them drive every
motion module: the effect, the factor on the module's residual (the pack's `motion_scale` times `effect_multival`),
and the scale, the factor on its temporal attention keys. Outside the start/end percent of the sampling steps the
modules are skipped (effect 0), as ADE does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .context_handler import window_frames

Multival = float | torch.Tensor


def checked_multival(value, name: str) -> Multival:
    """A number or a (frames, H, W) tensor of finite values; anything else is refused naming the input."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        finite = value == value and abs(value) != float("inf")
    elif torch.is_tensor(value) and value.ndim in (1, 3) and value.numel() and value.is_floating_point():
        value = value.detach().float().cpu()
        value = value[:, None, None] if value.ndim == 1 else value
        finite = bool(torch.isfinite(value).all())
    else:
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise ValueError(f"{name}: expected a number, a per-frame list or a mask (frames, height, width), got "
                         f"{shape}; connect AnimateLCM Value Schedule or a MULTIVAL node")
    if not finite:
        raise ValueError(f"{name}: a value is not a finite number (NaN or infinite)")
    return value


def combined(a: Multival, b: Multival) -> Multival:
    """a x b, frame by frame: the shorter clip repeats its last frame, the smaller mask is resized to the larger."""
    if not (torch.is_tensor(a) and torch.is_tensor(b)):
        return a * b
    if a.shape[1] * a.shape[2] < b.shape[1] * b.shape[2]:
        a, b = b, a
    if b.shape[1:] != a.shape[1:] and b.shape[1:] != (1, 1):
        b = F.interpolate(b[:, None], size=a.shape[1:], mode="bilinear", align_corners=False)[:, 0]
    frames = max(a.shape[0], b.shape[0])
    return extended(a, frames) * extended(b, frames)


def extended(value: torch.Tensor, frames: int) -> torch.Tensor:
    """The first `frames` frames of `value`, repeating its last frame past its end."""
    if value.shape[0] >= frames:
        return value[:frames]
    return torch.cat([value, value[-1:].expand(frames - value.shape[0], *value.shape[1:])])


@dataclass(frozen=True)
class MotionStrength:
    effect: Multival = 1.0
    key_scale: Multival = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0


def motion_strength(motion_scale: float, effect_multival=None, scale_multival=None, start_percent: float = 0.0,
                    end_percent: float = 1.0) -> MotionStrength:
    """The strength ALCM_ApplyMotionModel's inputs ask for (their percents already checked by the node), the
    multivals checked before any sampling."""
    effect = float(motion_scale)
    if effect_multival is not None:
        effect = combined(effect, checked_multival(effect_multival, "effect_multival"))
    key_scale = 1.0 if scale_multival is None else checked_multival(scale_multival, "scale_multival")
    return MotionStrength(effect, key_scale, start_percent, end_percent)


def sigma_range(strength: MotionStrength, model_sampling) -> tuple[float, float] | None:
    """(highest, lowest) sigma at which the motion modules run, ComfyUI's percent-to-sigma mapping; None for every
    step (no sigma to read, so no device sync in each module)."""
    if (strength.start_percent, strength.end_percent) == (0.0, 1.0):
        return None
    return (float(model_sampling.percent_to_sigma(strength.start_percent)),
            float(model_sampling.percent_to_sigma(strength.end_percent)))


def frame_factor(value: Multival, transformer_options: dict, chunks: int, frames_per_chunk: int, height: int,
                 width: int, device: torch.device) -> Multival:
    """The factor for one UNet call's frames: a number as is, a tensor cut to the frames of the context window the
    call holds, resized to this level, as (chunks * frames_per_chunk, 1, height or 1, width or 1)."""
    if not torch.is_tensor(value):
        return value
    frames, _ = window_frames(transformer_options, frames_per_chunk)
    factor = extended(value, max(frames) + 1)[frames][:, None]
    if factor.shape[-2:] not in ((1, 1), (height, width)):
        factor = F.interpolate(factor, size=(height, width), mode="bilinear", align_corners=False)
    return factor.to(device).repeat(chunks, 1, 1, 1)

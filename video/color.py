"""Colour matching to a source image, as the official AnimateLCM-I2V code does after decoding.

Over a few denoising steps the frames drift in colour (usually paler or darker than the image they started from).
The official pipeline (`adjust_colors` in animatelcm_sd15/animatelcm/utils/util.py) pulls each decoded frame back
towards the source image in HSV: the frame's saturation and value are shifted by the full difference between the
source's mean and the frame's mean, its hue by only 0.03 of that difference (a larger hue shift would recolour
the scene). Here the same shifts are applied in float on torch tensors (kornia's HSV conversion, which ComfyUI
ships), with a `strength` that scales them.

Choices, where the official code (OpenCV uint8 HSV) is loose or silent:
- Means are per frame: each frame is compared with the reference on its own, as the official loop does, so a clip
  that drifts gradually is corrected more towards its end.
- Hue is circular. The official code takes the arithmetic mean of OpenCV's 0..180 hue and clips the shifted hue at
  180; that turns a red image (hues near both 0 and 1) into a "cyan" mean and pushes a red frame the long way round
  the wheel towards a red reference. Here the mean hue is the circular mean (the angle of the mean unit vector), the
  difference is the shortest signed arc in [-0.5, 0.5) turns, and the shifted hue wraps modulo 1. Away from red and
  for narrow hue spreads this equals the official result; the hue shift is at most 0.015 turns (5.4 degrees).
  Grey pixels count with hue 0, as in OpenCV and kornia.
- Saturation and value are clamped to [0, 1] after the shift (the official code clips to 0..255 in uint8).
- Of a reference batch only the first image is used; only its means matter, so its size need not match the frames'.
- A fourth (alpha) channel of the frames passes through untouched; a reference's alpha is ignored.
"""

from __future__ import annotations

import math

import torch
from kornia.color import hsv_to_rgb, rgb_to_hsv

HUE_FACTOR = 0.03  # the official fraction of the mean hue difference applied to the hue
TAU = 2 * math.pi


def _channels_first(images: torch.Tensor) -> torch.Tensor:
    """[..., H, W, C>=3] in 0..1 -> float32 [..., 3, H, W] RGB, the layout kornia converts."""
    return images[..., :3].movedim(-1, -3).to(torch.float32)


def _hsv_means(hsv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image means of a kornia HSV tensor [..., 3, H, W]: (circular mean hue in turns [-0.5, 0.5), mean
    saturation, mean value), each of shape [...]."""
    angle = hsv[..., 0, :, :]
    hue = torch.atan2(angle.sin().mean((-2, -1)), angle.cos().mean((-2, -1))) / TAU
    return hue, hsv[..., 1, :, :].mean((-2, -1)), hsv[..., 2, :, :].mean((-2, -1))


def _check(frames: torch.Tensor, reference: torch.Tensor, strength: float, chunk_size: int) -> None:
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise ValueError(f"frames must be an image batch [frames, height, width, 3 or 4 channels], got shape "
                         f"{list(frames.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("frames is an empty batch: there are no frames to correct; connect the decoded frames")
    if reference.ndim not in (3, 4) or reference.shape[-1] not in (3, 4):
        raise ValueError(f"reference must be an image [height, width, 3 or 4 channels] or a batch of them, got shape "
                         f"{list(reference.shape)}")
    if reference.ndim == 4 and reference.shape[0] == 0:
        raise ValueError("reference is an empty batch: connect the source image (e.g. the I2V input image)")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")


@torch.no_grad()
def match_color(frames: torch.Tensor, reference: torch.Tensor, strength: float = 1.0,
                chunk_size: int = 16) -> torch.Tensor:
    """Frames [F, H, W, C] (C = 3, or 4 with alpha; values 0..1) with their colours pulled towards `reference`
    ([H', W', C'] or a batch [B, H', W', C'], of which the first image is used; any size).

    Per frame, with (h, s, v) means of the frame and (H, S, V) of the reference, hue in turns:
    hue += strength * 0.03 * arc(H - h) (wrapped modulo 1), saturation += strength * (S - s),
    value += strength * (V - v) (both clamped to [0, 1]). strength 0 returns `frames` itself, unchanged.
    The result has the dtype and device of `frames`; the work is done in float32, `chunk_size` frames at a time,
    so a long clip needs only one chunk's intermediates at once.
    """
    _check(frames, reference, strength, chunk_size)
    if strength == 0:
        return frames
    if reference.ndim == 4:
        reference = reference[0]
    target_hue, target_sat, target_val = _hsv_means(rgb_to_hsv(_channels_first(reference.to(frames.device))))
    output = frames.clone()  # the alpha channel, if any, stays as it is
    for start in range(0, frames.shape[0], chunk_size):
        hsv = rgb_to_hsv(_channels_first(frames[start:start + chunk_size]))
        hue, sat, val = _hsv_means(hsv)
        arc = torch.remainder(target_hue - hue + 0.5, 1.0) - 0.5  # shortest signed way round, [-0.5, 0.5)
        shift_hue = (strength * HUE_FACTOR * TAU) * arc
        shift_sat, shift_val = strength * (target_sat - sat), strength * (target_val - val)
        hsv = torch.stack((
            torch.remainder(hsv[:, 0] + shift_hue[:, None, None], TAU),
            (hsv[:, 1] + shift_sat[:, None, None]).clamp(0.0, 1.0),
            (hsv[:, 2] + shift_val[:, None, None]).clamp(0.0, 1.0),
        ), dim=1)
        output[start:start + chunk_size, ..., :3] = hsv_to_rgb(hsv).movedim(-3, -1).to(frames.dtype)
    return output

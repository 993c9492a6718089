"""Which frames each context window holds, and how overlapping windows are weighted when fused.

A clip longer than the motion model's training length (16 frames) is denoised as windows of `length` frames whose
outputs are averaged per frame with these weights. Every schedule covers every frame at every step, windows never
hold a frame twice and always list frames in time order (wrapping past the end only in a closed loop), and every
frame gets a positive total weight, so the fused result is a proper weighted mean.

ComfyUI 0.3.75's own schedules (comfy/context_windows.py) break for video batches: the uniform schedule with a
stride yields frame indices past the end, overlap-linear fails on a window shorter than the overlap, and its step
lookup compares the whole batch of timesteps with the schedule. Hence these functions.
"""

from __future__ import annotations

import math

SCHEDULES = ("uniform", "looped uniform", "static", "batched")
FUSE_METHODS = ("pyramid", "flat", "overlap-linear")


def ordered_halving(step: int) -> float:
    """0, 1/2, 1/4, 3/4, 1/8, ...: the bit-reversed step, so uniform windows start somewhere new at every step."""
    return int(f"{step:064b}"[::-1], 2) / (1 << 64)


def context_windows(frames: int, length: int, overlap: int, schedule: str, step: int = 0,
                    stride: int = 1) -> list[list[int]]:
    if frames <= length:
        return [list(range(frames))]
    if schedule == "batched":
        return [list(range(start, min(start + length, frames))) for start in range(0, frames, length)]
    if schedule == "static":
        starts = list(range(0, frames - length, length - overlap)) + [frames - length]
        return [list(range(start, start + length)) for start in starts]
    if schedule in ("uniform", "looped uniform"):
        return _uniform(frames, length, overlap, step, stride, closed_loop=schedule == "looped uniform")
    raise ValueError(f"unknown context schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")


def _uniform(frames: int, length: int, overlap: int, step: int, stride: int, closed_loop: bool) -> list[list[int]]:
    """AnimateDiff's uniform schedule: windows every `length - overlap` frames from a start that moves each step,
    plus, with `stride` > 1, windows of every 2nd, 4th... frame (only where such a window fits in the clip)."""
    windows: list[list[int]] = []
    shift = ordered_halving(step)
    levels = min(stride, int(math.ceil(math.log2(frames / length))) + 1)
    for level in range(levels):
        spacing = 1 << level
        span = spacing * (length - 1) + 1
        if span > frames:
            break
        start = round(frames * shift) + int(shift * spacing)
        end = frames + start + (0 if closed_loop else -overlap)
        for first in range(start, end, spacing * length - overlap):
            window = [(first + k * spacing) % frames for k in range(length)]
            if closed_loop or window == sorted(window):
                candidates = [window]
            else:  # a window running past the end: one ending at the last frame, one starting at the first
                candidates = [list(range(frames - span, frames, spacing)), list(range(0, span, spacing))]
            windows += [w for w in candidates if w not in windows]
    return windows


def fuse_weights(method: str, window: list[int], frames: int, overlap: int) -> list[float]:
    """Per-frame weights of one window's output."""
    n = len(window)
    if method == "flat":
        return [1.0] * n
    if method == "pyramid":  # highest in the middle of the window, where the frame has context on both sides
        return [float(min(i + 1, n - i)) for i in range(n)]
    if method == "overlap-linear":  # ramps across the overlap, except at the clip's own ends
        weights = [1.0] * n
        ramp = min(overlap, n // 2)
        for i in range(ramp):
            up = (i + 1) / (ramp + 1)
            if window[0] != 0:
                weights[i] = up
            if window[-1] != frames - 1:
                weights[n - 1 - i] = up
        return weights
    raise ValueError(f"unknown fuse method {method!r}: use one of {', '.join(FUSE_METHODS)}")

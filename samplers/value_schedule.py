"""Numbers keyframed over the frames of a clip, as users paste them: `0: 0.6`, `"16": (1.2),`, one per line or
comma-separated on one line (FizzNodes' `0:(0.6), 16:(1.2)`). Frames between keyframes are interpolated the way
prompt travel blends prompts (`prompt_schedule.frame_blend`); frames before the first keyframe hold its value and
frames after the last hold the last.
"""

import re

from .prompt_schedule import frame_blend

_ENTRY = re.compile(r'^"?\s*(-?\d+)\s*"?\s*[:=]\s*"?\s*\(?\s*([^()"\s]+)\s*\)?\s*"?$')


def parse_value_schedule(text: str) -> list[tuple[int, float]]:
    """(frame, value) pairs as written, sorted; a negative frame counts from the end (placed by `frame_values`).
    Braces around the whole text, blank entries and `#` comment lines are skipped; anything else that is not
    `N: number` is refused, quoted."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    keys: dict[int, float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith("#"):
            continue
        for entry in (e.strip() for e in line.split(",")):
            if not entry:
                continue
            match = _ENTRY.match(entry)
            try:
                value = float(match.group(2)) if match else None
            except ValueError:
                value = None
            if value is None or value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"value schedule line {number}: expected `N: value` (a frame number, a colon, then a "
                                 f"number such as 0.8), got {entry!r}")
            frame = int(match.group(1))
            if frame in keys:
                raise ValueError(f"value schedule line {number}: frame {frame} is keyed twice; keep one of the two")
            keys[frame] = value
    if not keys:
        raise ValueError("the value schedule has no keyframes: write one per line as `0: 1.0`")
    return sorted(keys.items())


def frame_values(keys: list[tuple[int, float]], num_frames: int, interpolation: str = "linear") -> list[float]:
    """One value per frame of a clip of `num_frames` (negative keyframes counted from its end)."""
    placed: dict[int, float] = {}
    written: dict[int, int] = {}
    for frame, value in keys:
        at = frame + num_frames if frame < 0 else frame
        if at < 0:
            raise ValueError(f"value schedule: frame {frame} counts back past the first of the {num_frames} frames")
        if at in placed:
            raise ValueError(f"value schedule: frames {written[at]} and {frame} are both frame {at} of the "
                             f"{num_frames} frames; keep one of the two")
        placed[at], written[at] = value, frame
    frames = sorted(placed)
    values = [placed[f] for f in frames]
    return [values[a] + w * (values[b] - values[a]) for a, b, w in frame_blend(frames, num_frames, interpolation)]


def schedule_length(keys: list[tuple[int, float]]) -> int:
    """The frames a schedule covers when no frame count is given: up to its last keyframe (later frames hold the
    last value, as every multival is extended). Negative frames need the frame count."""
    negative = [frame for frame, _ in keys if frame < 0]
    if negative:
        raise ValueError(f"value schedule: frame {negative[0]} counts from the end, so the clip's frame count is "
                         f"needed: set frame_count, or count frames from 0")
    return keys[-1][0] + 1

"""Prompt travel: keyframed prompts blended into one conditioning per frame.

A schedule is text with one keyframe per line, `N: prompt` (or FizzNodes-style `"N": "prompt",`, braces allowed).
Each frame gets a mix of the two keyframes around it; at a keyframe's own frame the mix is that prompt alone,
so its embedding comes through bit-exactly. Frames before the first keyframe hold the first prompt, frames at or
after the last hold the last prompt. A keyframe past the end of the video is allowed: the last frames travel
toward it without reaching it.
"""

import json
import math
import re
from dataclasses import dataclass

import torch

INTERPOLATIONS = ("linear", "ease", "none")
_KEYFRAME = re.compile(r'^"?\s*(-?\d+)\s*"?\s*:(.*)$')
_QUOTED = re.compile(r'^(".*")\s*,?$')


@dataclass(frozen=True)
class Keyframe:
    frame: int
    prompt: str


def _unquote(prompt: str) -> str:
    """`"a cat",` -> `a cat` (JSON escapes decoded); an unquoted prompt is kept as written, commas included."""
    quoted = _QUOTED.match(prompt)
    if not quoted:
        return prompt
    try:
        return json.loads(quoted.group(1))
    except ValueError:
        return quoted.group(1)[1:-1]


def _strip_braces(lines: list[str]) -> list[str]:
    """Drops a `{` opening the first entry and a `}` closing the last, as in a pasted JSON object."""
    filled = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    if filled and lines[filled[0]].startswith("{") and lines[filled[-1]].endswith("}"):
        lines[filled[0]] = lines[filled[0]][1:].strip()
        lines[filled[-1]] = lines[filled[-1]][:-1].strip()
    return lines


def parse_prompt_schedule(text: str) -> list[Keyframe]:
    """Keyframes sorted by frame. Blank lines and lines starting with `#` are skipped; a prompt may contain colons
    (`0: a (cat:1.2)`), only the first one after the frame number separates it."""
    lines = _strip_braces([line.strip() for line in text.splitlines()])
    seen: dict[int, int] = {}
    keyframes = []
    for number, line in enumerate(lines, start=1):
        if not line or line.startswith("#"):
            continue
        match = _KEYFRAME.match(line)
        if not match:
            raise ValueError(f"prompt schedule line {number}: expected `N: prompt` (a frame number, a colon, then the "
                             f"prompt), got {line!r}; start comment lines with #")
        frame, prompt = int(match.group(1)), _unquote(match.group(2).strip()).strip()
        if frame < 0:
            raise ValueError(f"prompt schedule line {number}: frame {frame} is negative; frames count from 0")
        if frame in seen:
            raise ValueError(f"prompt schedule line {number}: frame {frame} is already keyed on line {seen[frame]}; "
                             f"keep one of the two lines")
        if not prompt:
            raise ValueError(f"prompt schedule line {number}: frame {frame} has an empty prompt; write the prompt "
                             f"after the colon or delete the line")
        seen[frame] = number
        keyframes.append(Keyframe(frame, prompt))
    if not keyframes:
        raise ValueError("the prompt schedule has no keyframes: write one per line as `0: a cat walking`")
    return sorted(keyframes, key=lambda k: k.frame)


def _ease(t: float) -> float:
    return t * t * (3 - 2 * t)


def frame_blend(keyframes: list[int], num_frames: int, interpolation: str = "linear") -> list[tuple[int, int, float]]:
    """For each frame, `(a, b, w)`: indices into `keyframes` and the weight of b, the frame's mix being
    (1 - w) * prompt[a] + w * prompt[b].

    Between keyframes fa < fb, t = (f - fa) / (fb - fa) and w is t ("linear"), 3t² - 2t³ ("ease"), or 0 ("none":
    hold the previous prompt until the next keyframe). Whenever w is 0, b == a: at a keyframe's own frame, before the
    first keyframe and from the last one on, the frame is exactly one prompt.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if not keyframes or any(fa >= fb for fa, fb in zip(keyframes, keyframes[1:])):
        raise ValueError(f"keyframes must be a non-empty list of strictly increasing frames, got {keyframes}")
    table = []
    for f in range(num_frames):
        a = max((i for i, frame in enumerate(keyframes) if frame <= f), default=0)
        w = 0.0
        if keyframes[a] <= f and a + 1 < len(keyframes) and interpolation != "none":
            t = (f - keyframes[a]) / (keyframes[a + 1] - keyframes[a])
            w = t if interpolation == "linear" else _ease(t)
        table.append((a, a + 1, w) if w else (a, a, 0.0))
    return table


def _mix(tensors: list[torch.Tensor], blend: list[tuple[int, int, float]]) -> torch.Tensor:
    """Per-frame mixes of batch-1 tensors, stacked on dim 0. torch.lerp returns a at w=0 and b at w=1 exactly
    (it computes a + w(b - a) below w=0.5 and b - (1 - w)(b - a) above)."""
    if any(t.shape[0] != 1 for t in tensors):
        shapes = [tuple(t.shape) for t in tensors]
        raise ValueError(f"each keyframe's tensor must have a batch of 1, got shapes {shapes}")
    return torch.cat([tensors[a] if w == 0 else torch.lerp(tensors[a], tensors[b], w) for a, b, w in blend])


def blend_embeddings(embeddings: list[torch.Tensor], blend: list[tuple[int, int, float]]) -> torch.Tensor:
    """[F, tokens, dim] cross-attention conditioning from one [1, tokens_i, dim] embedding per keyframe.

    Prompts past 77 tokens encode to longer multiples of 77. As ComfyUI does when it batches such conds
    (comfy/conds.py, CONDCrossAttn.concat), each embedding is repeated along the tokens up to the least common
    multiple of the lengths: attending over a sequence repeated k times gives the same result as over the sequence
    once, so every prompt keeps its meaning (ConditioningAverage's truncating or zero padding would not).
    With equal lengths nothing is repeated and keyframe frames equal their prompt's embedding bit-exactly.
    """
    if len({e.shape[2] for e in embeddings}) > 1:
        raise ValueError(f"the prompts' embeddings differ in width: {[tuple(e.shape) for e in embeddings]}; "
                         f"encode every prompt with the same CLIP")
    tokens = math.lcm(*(e.shape[1] for e in embeddings))
    return _mix([e.repeat(1, tokens // e.shape[1], 1) for e in embeddings], blend)


def blend_pooled(pooled: list[torch.Tensor], blend: list[tuple[int, int, float]]) -> torch.Tensor:
    """[F, dim] pooled outputs from one [1, dim] per keyframe, with the same mix as the embeddings."""
    return _mix(pooled, blend)

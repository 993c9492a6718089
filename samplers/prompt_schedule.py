"""Prompt travel: keyframed prompts blended into one conditioning per frame.

A schedule is text with one keyframe per line, `N: prompt` (or `N = prompt`, or FizzNodes/ADE-style
`"N": "prompt",`, braces allowed), or a JSON object on one line. A negative frame counts from the end (-1 is the
last frame), so it is placed once the frame count is known. Each frame gets a mix of the two keyframes around it;
at a keyframe's own frame the mix is that prompt alone, so its embedding comes through bit-exactly. Frames before
the first keyframe hold the first prompt, frames at or after the last hold the last prompt. A keyframe past the end
of the video is allowed: the last frames travel toward it without reaching it.
"""

import json
import math
import re
from dataclasses import dataclass, field, replace

import torch

INTERPOLATIONS = ("linear", "ease", "none")
_KEYFRAME = re.compile(r'^"?\s*(-?\d+)\s*"?\s*[:=](.*)$')
_QUOTED = re.compile(r'^(".*")\s*,?$')
_TRAILING_COMMA = re.compile(r",\s*}\s*$")


@dataclass(frozen=True)
class Keyframe:
    frame: int
    prompt: str
    line: int = field(default=0, compare=False)  # where it was written, for messages; 0 in a one-line JSON object

    def where(self) -> str:
        return f"line {self.line}" if self.line else f'key "{self.frame}"'


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


def _one_line_json(text: str) -> list[tuple[str, object]] | None:
    """The entries of a schedule written as one JSON object (braces optional, a trailing comma allowed, as FizzNodes
    reads it), or None when the text is not one line of JSON."""
    text = text.strip()
    if "\n" in text or not text:
        return None
    text = _TRAILING_COMMA.sub("}", text if text.startswith("{") else "{" + text.rstrip(",") + "}")
    try:
        return json.loads(text, object_pairs_hook=list)
    except ValueError:
        return None


def _entries(text: str) -> list[tuple[int, str, int]]:
    """(frame, prompt, line) as written; a line that is not a keyframe is refused, quoted."""
    pairs = _one_line_json(text)
    if pairs is not None:
        entries = []
        for key, prompt in pairs:
            if not re.fullmatch(r"-?\d+", str(key).strip()) or not isinstance(prompt, str):
                raise ValueError(f"prompt schedule entry {key!r}: {prompt!r}: expected \"frame number\": \"prompt\"")
            entries.append((int(key), prompt.strip(), 0))
        return entries
    entries = []
    for number, line in enumerate(_strip_braces([line.strip() for line in text.splitlines()]), start=1):
        if not line or line.startswith("#"):
            continue
        match = _KEYFRAME.match(line)
        if not match:
            raise ValueError(f"prompt schedule line {number}: expected `N: prompt` (a frame number, a colon, then the "
                             f"prompt), got {line!r}; start comment lines with #")
        entries.append((int(match.group(1)), _unquote(match.group(2).strip()).strip(), number))
    return entries


def parse_prompt_schedule(text: str, pre_text: str = "", app_text: str = "") -> list[Keyframe]:
    """Keyframes as written (frames not yet placed: see `place_keyframes`). Blank lines and lines starting with `#`
    are skipped; a prompt may contain colons (`0: a (cat:1.2)`), only the first one after the frame number separates
    it. `pre_text` and `app_text` go before and after every prompt, joined with ", " as ADE and FizzNodes join them."""
    seen: dict[int, Keyframe] = {}
    keyframes = []
    for frame, prompt, line in _entries(text):
        keyframe = Keyframe(frame, prompt, line)
        if frame in seen:
            raise ValueError(f"prompt schedule {keyframe.where()}: frame {frame} is already keyed on "
                             f"{seen[frame].where()}; keep one of the two")
        if not prompt:
            raise ValueError(f"prompt schedule {keyframe.where()}: frame {frame} has an empty prompt; write the prompt "
                             f"after the colon or delete the line")
        seen[frame] = keyframe
        keyframes.append(replace(keyframe, prompt=", ".join(t for t in (pre_text.strip(), prompt, app_text.strip())
                                                            if t)))
    if not keyframes:
        raise ValueError("the prompt schedule has no keyframes: write one per line as `0: a cat walking`")
    return keyframes


def place_keyframes(keyframes: list[Keyframe], num_frames: int) -> list[Keyframe]:
    """The keyframes at their frames in a clip of `num_frames`, sorted: a negative frame counts from the end."""
    placed: dict[int, Keyframe] = {}
    for keyframe in keyframes:
        frame = keyframe.frame + num_frames if keyframe.frame < 0 else keyframe.frame
        if frame < 0:
            raise ValueError(f"prompt schedule {keyframe.where()}: frame {keyframe.frame} counts back past the first "
                             f"of the {num_frames} frames; use -{num_frames} to -1, or count from 0")
        if frame in placed:
            raise ValueError(f"prompt schedule {keyframe.where()}: frame {keyframe.frame} is frame {frame} of "
                             f"{num_frames}, already keyed on {placed[frame].where()}; keep one of the two")
        placed[frame] = replace(keyframe, frame=frame)
    return [placed[frame] for frame in sorted(placed)]


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

"""Prompt travel with a ComfyUI CLIP: each keyframe's text encoded once, blended per frame (samplers/prompt_schedule.py)
into a CONDITIONING with one row per frame.

With frame_count 0 the frame count is the latent's: the conditioning carries the encoded schedule under `KEY`, and
the motion model's sampling wrapper (`place_schedules`, from patching/motion_injection.py) blends it once the noise
says how many frames there are; until then it holds the first keyframe's prompt.
"""

from dataclasses import dataclass

import torch

from ..samplers.prompt_schedule import (Keyframe, blend_embeddings, blend_pooled, frame_blend,
                                        parse_prompt_schedule, place_keyframes)

KEY = "alcm_prompt_schedule"


@dataclass(frozen=True)
class EncodedSchedule:
    keyframes: list[Keyframe]  # as written: negative frames are placed per clip length
    encoded: dict[str, tuple[torch.Tensor, torch.Tensor]]  # prompt -> (embedding [1, tokens, dim], pooled [1, dim])
    interpolation: str

    def for_frames(self, frame_count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings [frames, tokens, dim], pooled [frames, dim])."""
        keyframes = place_keyframes(self.keyframes, frame_count)
        blend = frame_blend([k.frame for k in keyframes], frame_count, self.interpolation)
        return (blend_embeddings([self.encoded[k.prompt][0] for k in keyframes], blend),
                blend_pooled([self.encoded[k.prompt][1] for k in keyframes], blend))


def encode_schedule(clip, text: str, frame_count: int, interpolation: str, pre_text: str = "",
                    app_text: str = "") -> list:
    """[[embeddings [frames, tokens, dim], {"pooled_output": [frames, dim]}]]: one row per frame, which the sampler
    lines up with the latent's frames (and context windows cut to each window's frames). frame_count 0: blended at
    sampling time, for the latent's frames."""
    keyframes = parse_prompt_schedule(text, pre_text, app_text)
    if frame_count:
        place_keyframes(keyframes, frame_count)  # a misplaced keyframe is refused before any text is encoded
    prompts = sorted({k.prompt for k in keyframes})
    encoded = {p: clip.encode_from_tokens(clip.tokenize(p), return_pooled=True) for p in prompts}  # each text once
    schedule = EncodedSchedule(keyframes, encoded, interpolation)
    if frame_count:
        embeddings, pooled = schedule.for_frames(frame_count)
        return [[embeddings, {"pooled_output": pooled}]]
    first = min(keyframes, key=lambda k: (k.frame < 0, k.frame))  # frame 0's prompt until the frames are known
    embedding, pooled = schedule.encoded[first.prompt]
    return [[embedding, {"pooled_output": pooled, KEY: schedule}]]


def place_schedules(conds: dict[str, list[dict]], frame_count: int) -> None:
    """Blends every deferred schedule in a sampler's per-call copies of the conds for `frame_count` frames."""
    for cond_list in conds.values():
        for cond in cond_list:
            schedule = cond.get(KEY)
            if schedule is not None:
                cond["cross_attn"], cond["pooled_output"] = schedule.for_frames(frame_count)

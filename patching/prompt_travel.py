"""Prompt travel with a ComfyUI CLIP: each keyframe's text encoded once, blended per frame (samplers/prompt_schedule.py)
into a CONDITIONING with one row per frame."""

from ..samplers.prompt_schedule import blend_embeddings, blend_pooled, frame_blend, parse_prompt_schedule


def encode_schedule(clip, text: str, frame_count: int, interpolation: str) -> list:
    """[[embeddings [frames, tokens, dim], {"pooled_output": [frames, dim]}]]: one row per frame, which the sampler
    lines up with the latent's frames (and context windows cut to each window's frames)."""
    keyframes = parse_prompt_schedule(text)
    prompts = sorted({k.prompt for k in keyframes})
    encoded = {p: clip.encode_from_tokens(clip.tokenize(p), return_pooled=True) for p in prompts}  # each text once
    blend = frame_blend([k.frame for k in keyframes], frame_count, interpolation)
    embeddings = blend_embeddings([encoded[k.prompt][0] for k in keyframes], blend)
    pooled = blend_pooled([encoded[k.prompt][1] for k in keyframes], blend)
    return [[embeddings, {"pooled_output": pooled}]]

"""ALCM_PromptSchedule on ComfyUI's CLIP: per-frame embeddings exact at keyframes, the stated mix in between, and
a frame count that does not match the latent refused before sampling."""

import pytest
import torch

from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
from animatelcm.nodes.prompt_schedule import PromptSchedule
from animatelcm.nodes.sampling import KSampler
from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model


def encode(clip, text):
    return clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)


def test_keyframes_are_their_prompts_exactly_and_frames_between_are_the_stated_mix(sd15):
    _, clip, _ = sd15
    [[embeddings, extra]] = PromptSchedule.execute(clip, "# travel\n2: a red fox\n10: a blue whale: at sea",
                                                   14, "linear").args[0]
    fox, fox_pooled = encode(clip, "a red fox")
    whale, whale_pooled = encode(clip, "a blue whale: at sea")
    assert embeddings.shape == (14, 77, 768) and extra["pooled_output"].shape == (14, 768)
    for frame in (0, 1, 2):  # before and at the first keyframe: the first prompt, bit for bit
        assert torch.equal(embeddings[frame], fox[0])
    for frame in (10, 11, 13):  # at and after the last keyframe
        assert torch.equal(embeddings[frame], whale[0])
    # frame 4 is 2/8 of the way from frame 2 to frame 10
    torch.testing.assert_close(embeddings[4], 0.75 * fox[0] + 0.25 * whale[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(extra["pooled_output"][4], 0.75 * fox_pooled[0] + 0.25 * whale_pooled[0],
                               rtol=0, atol=1e-5)
    held = PromptSchedule.execute(clip, "2: a red fox\n10: a blue whale: at sea", 14, "none").args[0][0][0]
    assert torch.equal(held[9], fox[0]) and torch.equal(held[10], whale[0])


def test_schedule_errors_are_reported_at_validation():
    assert "line 2" in PromptSchedule.validate_inputs("0: a cat\nno frame here")
    assert PromptSchedule.validate_inputs("0: a cat\n8: a dog") is True


def test_a_schedule_for_another_frame_count_is_refused_before_sampling():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    model = attach_motion_model(tiny_sd15_model(), load_motion_model_file(str(path), path.name), 1.0, "auto")
    positive = [[torch.zeros(16, 77, 768), {}]]
    negative = [[torch.zeros(1, 77, 768), {}]]
    with pytest.raises(ValueError, match="positive conditioning has 16 frames.*latent has 12.*frame_count to 12"):
        KSampler.execute(model, positive, negative, {"samples": torch.zeros(12, 4, 8, 8)}, 0, 1, 1.0, 1.0)

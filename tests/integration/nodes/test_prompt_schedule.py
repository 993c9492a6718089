"""ALCM_PromptSchedule on ComfyUI's CLIP: per-frame embeddings exact at keyframes, the stated mix in between, a
frame count that does not match the latent refused before sampling, and frame_count 0 blended for the latent's
frames when sampling."""

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


def test_pre_and_app_text_are_encoded_with_every_prompt(sd15):
    _, clip, _ = sd15
    [[embeddings, _]] = PromptSchedule.execute(clip, '"0": "a red fox",\n"-1": "a blue whale",', 4, "linear",
                                               pre_text="masterpiece", app_text="at dusk").args[0]
    assert torch.equal(embeddings[0], encode(clip, "masterpiece, a red fox, at dusk")[0][0])
    assert torch.equal(embeddings[3], encode(clip, "masterpiece, a blue whale, at dusk")[0][0])


def tiny_motion_sd15():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    return attach_motion_model(tiny_sd15_model(), load_motion_model_file(str(path), path.name), 1.0, "auto")


def test_frame_count_0_samples_as_the_schedule_written_for_the_latents_frames(sd15):
    _, clip, _ = sd15
    model = tiny_motion_sd15()
    negative = [[torch.zeros(1, 77, 768), {}]]

    def sample(positive, frames):
        latent = {"samples": torch.zeros(frames, 4, 8, 8)}
        return KSampler.execute(model, positive, negative, latent, 3, 2, 1.0, 1.0).args[0]["samples"]

    deferred = PromptSchedule.execute(clip, "0: a red fox\n-1: a blue whale", 0, "ease").args[0]
    for frames in (12, 5):
        written = PromptSchedule.execute(clip, f"0: a red fox\n{frames - 1}: a blue whale", frames, "ease").args[0]
        assert torch.equal(sample(deferred, frames), sample(written, frames))
    fox_only = PromptSchedule.execute(clip, "0: a red fox", 5, "ease").args[0]
    assert not torch.allclose(sample(deferred, 5), sample(fox_only, 5), atol=1e-3)  # the schedule reached the UNet
    [[embedding, extra]] = deferred  # the node's output is left as it was: frame 0's prompt until sampling
    assert torch.equal(embedding, encode(clip, "a red fox")[0]) and "cross_attn" not in extra


def test_a_keyframe_before_the_first_frame_is_refused_when_the_frames_are_known(sd15):
    _, clip, _ = sd15
    with pytest.raises(ValueError, match="line 2: frame -9 counts back past the first of the 8 frames"):
        PromptSchedule.execute(clip, "0: a cat\n-9: a dog", 8, "linear")
    deferred = PromptSchedule.execute(clip, "0: a cat\n-9: a dog", 0, "linear").args[0]
    latent = {"samples": torch.zeros(8, 4, 8, 8)}
    with pytest.raises(ValueError, match="frame -9 counts back past the first of the 8 frames"):
        KSampler.execute(tiny_motion_sd15(), deferred, [[torch.zeros(1, 77, 768), {}]], latent, 0, 1, 1.0, 1.0)


def test_a_schedule_for_another_frame_count_is_refused_before_sampling():
    model = tiny_motion_sd15()
    positive = [[torch.zeros(16, 77, 768), {}]]
    negative = [[torch.zeros(1, 77, 768), {}]]
    with pytest.raises(ValueError, match="positive conditioning has 16 frames.*latent has 12.*frame_count to 12"):
        KSampler.execute(model, positive, negative, {"samples": torch.zeros(12, 4, 8, 8)}, 0, 1, 1.0, 1.0)

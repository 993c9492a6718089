"""Prompt travel: parsing keyframed prompts, the per-frame blend table, and the blended conditioning's exactness."""

import pytest
import torch

from animatelcm.samplers.prompt_schedule import (Keyframe, blend_embeddings, blend_pooled, frame_blend,
                                                 parse_prompt_schedule, place_keyframes)


def test_plain_lines_with_comments_blanks_and_colons_in_prompts_placed_in_frame_order():
    text = """
    # a cat turns into a dog
    32: a dog running, (fast:1.2)

    0: a cat walking: slowly
    """
    keyframes = parse_prompt_schedule(text)
    assert keyframes == [Keyframe(32, "a dog running, (fast:1.2)"), Keyframe(0, "a cat walking: slowly")]
    assert [k.line for k in keyframes] == [3, 5]
    assert place_keyframes(keyframes, 48) == [Keyframe(0, "a cat walking: slowly"),
                                              Keyframe(32, "a dog running, (fast:1.2)")]


def test_negative_frames_count_from_the_end_once_the_frame_count_is_known():
    keyframes = parse_prompt_schedule('"-1": "a dog",\n"0": "a cat",\n"-8" = "a bird"')
    assert place_keyframes(keyframes, 16) == [Keyframe(0, "a cat"), Keyframe(8, "a bird"), Keyframe(15, "a dog")]
    assert place_keyframes(keyframes, 9) == [Keyframe(0, "a cat"), Keyframe(1, "a bird"), Keyframe(8, "a dog")]


@pytest.mark.parametrize("text, frames, message", [
    ("0: a cat\n-17: a dog", 16, "line 2: frame -17 counts back past the first of the 16 frames; use -16 to -1"),
    ("0: a cat\n15: a dog\n-1: a bird", 16, "line 3: frame -1 is frame 15 of 16, already keyed on line 2"),
    ('{"0": "a cat", "-4": "a dog"}', 4, 'key "-4": frame -4 is frame 0 of 4, already keyed on key "0"'),
])
def test_placement_errors_name_the_keyframe_and_the_fix(text, frames, message):
    with pytest.raises(ValueError, match=message):
        place_keyframes(parse_prompt_schedule(text), frames)


def test_ade_equals_sign_and_one_line_json_as_pasted():
    assert parse_prompt_schedule('0 = "a cat",\n8 = a dog, running') == [Keyframe(0, "a cat"),
                                                                          Keyframe(8, "a dog, running")]
    expected = [Keyframe(0, "a cat, walking"), Keyframe(-1, 'a "dog"')]
    assert parse_prompt_schedule('{"0": "a cat, walking", "-1": "a \\"dog\\""}') == expected
    assert parse_prompt_schedule('"0": "a cat, walking", "-1": "a \\"dog\\"",') == expected


def test_pre_and_app_text_join_every_prompt_with_commas():
    assert parse_prompt_schedule("0: a cat\n8: a dog", pre_text=" masterpiece ", app_text="4k, sharp") == [
        Keyframe(0, "masterpiece, a cat, 4k, sharp"), Keyframe(8, "masterpiece, a dog, 4k, sharp")]
    assert parse_prompt_schedule("0: a cat", app_text="sharp") == [Keyframe(0, "a cat, sharp")]


def test_fizznodes_style_quoted_lines_with_braces_and_trailing_commas():
    text = '{\n"0": "a cat, walking",\n  "16" : "a \\"dog\\": running",\n"32": "a bird"\n}'
    assert parse_prompt_schedule(text) == [Keyframe(0, "a cat, walking"), Keyframe(16, 'a "dog": running'),
                                           Keyframe(32, "a bird")]
    assert parse_prompt_schedule('{"0": "a cat",\n"8": "a dog",}') == [Keyframe(0, "a cat"), Keyframe(8, "a dog")]


def test_braces_are_only_stripped_around_the_whole_schedule():
    assert parse_prompt_schedule("0: a {red|blue} cat\n4: a {big|small} dog}") == [
        Keyframe(0, "a {red|blue} cat"), Keyframe(4, "a {big|small} dog}")]


def test_an_unquoted_prompt_keeps_its_trailing_comma():
    assert parse_prompt_schedule("0: a cat,") == [Keyframe(0, "a cat,")]


@pytest.mark.parametrize("text, message", [
    ("", "has no keyframes"),
    ("# only a comment\n\n{\n}", "has no keyframes"),
    ("0: a cat\na dog", "line 2: expected `N: prompt`"),
    ("0: a cat\n\na dog: 4", "line 3: expected `N: prompt`.*got 'a dog: 4'"),
    ("0: a cat\n-4: a dog\n-4: a bird", "line 3: frame -4 is already keyed on line 2"),
    ('{"0": "a cat", "x": "a dog"}', "entry 'x': 'a dog': expected \"frame number\": \"prompt\""),
    ("0: a cat\n8: a dog\n8: a bird", "line 3: frame 8 is already keyed on line 2"),
    ("0: a cat\n8:   ", "line 2: frame 8 has an empty prompt"),
    ('"0": "",', 'key "0": frame 0 has an empty prompt'),
])
def test_errors_name_the_line_and_the_fix(text, message):
    with pytest.raises(ValueError, match=message):
        parse_prompt_schedule(text)


def test_linear_blend_table_holds_before_the_first_and_after_the_last_keyframe():
    assert frame_blend([2, 6], 9, "linear") == [
        (0, 0, 0.0), (0, 0, 0.0), (0, 0, 0.0), (0, 1, 0.25), (0, 1, 0.5), (0, 1, 0.75),
        (1, 1, 0.0), (1, 1, 0.0), (1, 1, 0.0)]


def test_ease_is_smoothstep_and_none_holds_each_prompt_until_the_next_keyframe():
    ease = frame_blend([0, 4, 8], 9, "ease")
    assert [w for _, _, w in ease] == [0.0, 0.15625, 0.5, 0.84375, 0.0, 0.15625, 0.5, 0.84375, 0.0]
    assert [(a, b) for a, b, _ in ease] == [(0, 0), (0, 1), (0, 1), (0, 1), (1, 1), (1, 2), (1, 2), (1, 2), (2, 2)]
    assert frame_blend([0, 4, 8], 9, "none") == [(0, 0, 0.0)] * 4 + [(1, 1, 0.0)] * 4 + [(2, 2, 0.0)]


def test_keyframes_past_the_end_are_travelled_toward_but_not_reached():
    assert frame_blend([0, 8], 4, "linear") == [(0, 0, 0.0), (0, 1, 0.125), (0, 1, 0.25), (0, 1, 0.375)]
    assert frame_blend([10, 20], 3, "linear") == [(0, 0, 0.0)] * 3


@pytest.mark.parametrize("keyframes, num_frames, interpolation, message", [
    ([0, 8], 16, "cubic", "interpolation must be one of"),
    ([0, 8], 0, "linear", "num_frames must be at least 1"),
    ([8, 0], 16, "linear", "strictly increasing"),
    ([], 16, "linear", "strictly increasing"),
])
def test_bad_blend_arguments(keyframes, num_frames, interpolation, message):
    with pytest.raises(ValueError, match=message):
        frame_blend(keyframes, num_frames, interpolation)


def _prompts(*lengths, dim=8):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(1, n, dim, generator=generator) for n in lengths]


def test_frames_at_and_before_the_first_keyframe_are_its_embedding_bit_exactly():
    a, b = _prompts(77, 77)
    cond = blend_embeddings([a, b], frame_blend([4, 36], 40, "linear"))
    assert cond.shape == (40, 77, 8)
    for f in range(5):
        assert torch.equal(cond[f:f + 1], a)
    for f in (36, 37, 39):
        assert torch.equal(cond[f:f + 1], b)


def test_an_interpolated_frame_is_the_stated_mix():
    a, b = _prompts(77, 77)
    cond = blend_embeddings([a, b], frame_blend([0, 32], 33, "linear"))
    torch.testing.assert_close(cond[8], (0.75 * a + 0.25 * b)[0], rtol=0, atol=1e-6)
    eased = blend_embeddings([a, b], frame_blend([0, 32], 33, "ease"))
    torch.testing.assert_close(eased[8], (0.84375 * a + 0.15625 * b)[0], rtol=0, atol=1e-6)


def test_the_mix_is_exact_at_both_ends_of_the_weight():
    a, b = _prompts(77, 77)
    assert torch.equal(blend_embeddings([a, b], [(0, 1, 0.0), (0, 1, 1.0)]), torch.cat([a, b]))


def test_pooled_outputs_blend_with_the_same_table():
    a, b = (torch.randn(1, 768, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    pooled = blend_pooled([a, b], frame_blend([0, 4], 6, "linear"))
    assert pooled.shape == (6, 768)
    assert torch.equal(pooled[0:1], a) and torch.equal(pooled[4:5], b) and torch.equal(pooled[5:6], b)
    torch.testing.assert_close(pooled[1:2], 0.75 * a + 0.25 * b, rtol=0, atol=1e-6)


def test_longer_prompts_are_matched_by_repeating_as_comfyui_batches_conds():
    short, long = _prompts(77, 154)
    cond = blend_embeddings([short, long], frame_blend([0, 2], 3, "linear"))
    assert cond.shape == (3, 154, 8)
    assert torch.equal(cond[0:1], torch.cat([short, short], dim=1)) and torch.equal(cond[2:3], long)
    assert blend_embeddings(_prompts(154, 231), [(0, 1, 0.5)]).shape == (1, 462, 8)


def test_repeating_the_tokens_leaves_attention_unchanged():
    query, (keys,) = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(3)), _prompts(77)
    once = torch.nn.functional.scaled_dot_product_attention(query, keys, keys)
    twice = torch.nn.functional.scaled_dot_product_attention(query, keys.repeat(1, 2, 1), keys.repeat(1, 2, 1))
    torch.testing.assert_close(twice, once, rtol=1e-5, atol=1e-6)


def test_mismatched_widths_or_batches_are_refused():
    with pytest.raises(ValueError, match="differ in width"):
        blend_embeddings([torch.zeros(1, 77, 768), torch.zeros(1, 77, 1024)], [(0, 1, 0.5)])
    with pytest.raises(ValueError, match="batch of 1"):
        blend_embeddings([torch.zeros(2, 77, 8), torch.zeros(1, 77, 8)], [(0, 1, 0.5)])

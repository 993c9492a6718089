"""Value schedules as users paste them, placed and interpolated over the frames."""

import pytest

from animatelcm.samplers.value_schedule import frame_values, parse_value_schedule, schedule_length


@pytest.mark.parametrize("text", ["0: 0.5\n4: 1.3", '{"0": 0.5, "4": 1.3,}', "0:(0.5), 4:(1.3)", '"0": "0.5",\n4 = 1.3',
                                  "# a comment\n\n0: 0.5,\n4: 1.3,"])
def test_the_pasted_forms_read_the_same(text):
    assert parse_value_schedule(text) == [(0, 0.5), (4, 1.3)]


def test_linear_between_keyframes_and_held_outside():
    keys = parse_value_schedule("2: 1.0\n6: 3.0")
    assert frame_values(keys, 9) == pytest.approx([1.0, 1.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 3.0])
    assert frame_values(keys, 9, "none") == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0]
    assert schedule_length(keys) == 7


def test_negative_frames_count_from_the_end():
    keys = parse_value_schedule("0: 0.0\n-1: 1.0")
    assert frame_values(keys, 5) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="frame -1 counts from the end.*set frame_count"):
        schedule_length(keys)
    with pytest.raises(ValueError, match="frames -3 and 0 are both frame 0 of the 3"):
        frame_values(parse_value_schedule("0: 1\n-3: 2"), 3)
    with pytest.raises(ValueError, match="frame -4 counts back past the first of the 3 frames"):
        frame_values(parse_value_schedule("-4: 2"), 3)


@pytest.mark.parametrize("text, quoted", [("0: fast", "'0: fast'"), ("0.5", "'0.5'"), ("0: nan", "'0: nan'"),
                                          ("0: 1\nx: 2", "'x: 2'")])
def test_what_is_not_a_keyframe_is_quoted(text, quoted):
    with pytest.raises(ValueError, match=f"expected `N: value`.*got {quoted}"):
        parse_value_schedule(text)


def test_a_frame_keyed_twice_or_nothing_keyed_is_refused():
    with pytest.raises(ValueError, match="frame 3 is keyed twice"):
        parse_value_schedule("3: 1\n3: 2")
    with pytest.raises(ValueError, match="no keyframes"):
        parse_value_schedule("# nothing\n")

"""Context-window schedules and fuse weights: coverage, order, no repeats, wrapping only when looped, positive weights."""

import itertools

import pytest

from animatelcm.samplers.context_windows import (FUSE_METHODS, SCHEDULES, context_windows, fuse_weights,
                                                 ordered_halving)

CASES = list(itertools.product(SCHEDULES, [17, 24, 31, 40, 64, 100], [(16, 4), (16, 0), (8, 2), (16, 15)], [1, 2, 3]))


def test_ordered_halving_visits_new_offsets():
    assert [ordered_halving(s) for s in range(5)] == [0, 0.5, 0.25, 0.75, 0.125]


@pytest.mark.parametrize("schedule,frames,window,stride", CASES)
def test_every_frame_is_covered_in_time_order_at_every_step(schedule, frames, window, stride):
    length, overlap = window
    for step in range(6):
        windows = context_windows(frames, length, overlap, schedule, step, stride)
        assert sorted({i for w in windows for i in w}) == list(range(frames)), (step, windows)
        for w in windows:
            assert len(set(w)) == len(w) and all(0 <= i < frames for i in w)
            assert len(w) == length or (schedule == "batched" and len(w) < length)
            steps = {(b - a) % frames for a, b in zip(w, w[1:])}
            assert len(steps) <= 1, w  # evenly spaced, in time order (modulo the clip in a loop)
            if schedule != "looped uniform":
                assert w == sorted(w), w


def test_short_clips_are_one_window():
    assert context_windows(12, 16, 4, "uniform") == [list(range(12))]
    assert context_windows(16, 16, 4, "looped uniform") == [list(range(16))]


def test_looped_windows_wrap_and_open_ones_do_not():
    def wraps(windows):
        return any(w != sorted(w) for w in windows)

    assert any(wraps(context_windows(40, 16, 4, "looped uniform", step)) for step in range(8))
    assert not any(wraps(context_windows(40, 16, 4, "uniform", step, 2)) for step in range(8))


def test_static_and_batched_windows():
    assert context_windows(40, 16, 4, "static") == [list(range(0, 16)), list(range(12, 28)), list(range(24, 40))]
    assert context_windows(40, 16, 4, "batched") == [list(range(0, 16)), list(range(16, 32)), list(range(32, 40))]


def test_uniform_windows_move_between_steps():
    assert context_windows(64, 16, 4, "uniform", 0) != context_windows(64, 16, 4, "uniform", 1)


@pytest.mark.parametrize("schedule,frames,window,stride", CASES)
@pytest.mark.parametrize("method", FUSE_METHODS)
def test_every_frame_gets_a_positive_total_weight(schedule, frames, window, stride, method):
    length, overlap = window
    totals = [0.0] * frames
    for w in context_windows(frames, length, overlap, schedule, 1, stride):
        weights = fuse_weights(method, w, frames, overlap)
        assert len(weights) == len(w) and all(x > 0 for x in weights)
        for i, x in zip(w, weights):
            totals[i] += x
    assert min(totals) > 0


def test_weight_shapes():
    assert fuse_weights("pyramid", list(range(6)), 20, 2) == [1, 2, 3, 3, 2, 1]
    assert fuse_weights("pyramid", list(range(5)), 20, 2) == [1, 2, 3, 2, 1]
    assert fuse_weights("flat", list(range(4)), 20, 2) == [1, 1, 1, 1]
    assert fuse_weights("overlap-linear", list(range(0, 6)), 20, 2) == [1, 1, 1, 1, 2 / 3, 1 / 3]
    assert fuse_weights("overlap-linear", list(range(14, 20)), 20, 2) == [1 / 3, 2 / 3, 1, 1, 1, 1]
    assert fuse_weights("overlap-linear", [19], 20, 4) == [1.0]  # a short last window is not ramped to nothing


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown context schedule 'spiral'"):
        context_windows(40, 16, 4, "spiral")
    with pytest.raises(ValueError, match="unknown fuse method 'median'"):
        fuse_weights("median", [0, 1], 2, 0)

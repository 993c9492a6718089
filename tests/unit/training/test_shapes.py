"""The moving-shapes dataset: deterministic, captions that say what the pixels show, shapes inside the frame."""

import math

import pytest
import torch

from animatelcm.training.shapes import (COLOURS, DIRECTIONS, RADIUS, RGB, SHAPES, VOCABULARY, MovingShapes,
                                        all_captions, all_labels, caption)

DATASET = MovingShapes(frames=8, size=32)


@pytest.fixture(scope="module")
def clips():
    return DATASET.sample(600, torch.Generator().manual_seed(0))


def _mask(videos: torch.Tensor) -> torch.Tensor:
    """Shape pixels: any channel above the black background, [..., H, W]."""
    return (videos > 0).any(dim=-3)


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    """(x, y) centroid of a [..., H, W] mask in pixels."""
    h, w = mask.shape[-2:]
    weights = mask.float()
    area = weights.sum(dim=(-2, -1))
    x = (weights * torch.arange(w)).sum(dim=(-2, -1)) / area
    y = (weights * torch.arange(h)[:, None]).sum(dim=(-2, -1)) / area
    return torch.stack([x, y], dim=-1)


def test_the_same_generator_seed_gives_the_same_clips():
    a = DATASET.sample(16, torch.Generator().manual_seed(7))
    b = DATASET.sample(16, torch.Generator().manual_seed(7))
    c = DATASET.sample(16, torch.Generator().manual_seed(8))
    assert torch.equal(a.videos, b.videos) and torch.equal(a.labels, b.labels) and a.captions == b.captions
    assert not torch.equal(a.videos, c.videos)


def test_shapes_ranges_and_dtypes(clips):
    assert clips.videos.shape == (600, 8, 3, 32, 32) and clips.videos.dtype == torch.float32
    assert clips.labels.shape == (600, 3) and clips.labels.dtype == torch.long
    assert len(clips) == len(clips.captions) == 600
    assert clips.videos.min() >= -1 and clips.videos.max() <= 1
    for i, n in enumerate((len(SHAPES), len(COLOURS), len(DIRECTIONS))):
        assert set(clips.labels[:, i].tolist()) == set(range(n))  # every value drawn
    assert len(set(map(tuple, clips.labels.tolist()))) == 36


def test_other_sizes_and_a_single_frame():
    single = MovingShapes(frames=1, size=16).sample(3, torch.Generator().manual_seed(0))
    assert single.videos.shape == (3, 1, 3, 16, 16)
    assert _mask(single.videos).any(dim=(-2, -1)).all()


def test_captions_match_labels_and_use_only_the_vocabulary(clips):
    for text, (shape, colour, direction) in zip(clips.captions, clips.labels.tolist()):
        assert text == caption(shape, colour, direction)
        assert text.split() == ["a", COLOURS[colour], SHAPES[shape], "moving", DIRECTIONS[direction]]
        assert set(text.split()) <= set(VOCABULARY)
    assert caption(0, 0, 0) == "a red circle moving left"


def test_all_captions_are_the_36_prompts_with_their_labels():
    captions, labels = all_captions(), all_labels()
    assert len(captions) == len(set(captions)) == 36 and labels.shape == (36, 3)
    assert captions == [caption(*label) for label in labels.tolist()]
    assert {word for text in captions for word in text.split()} == set(VOCABULARY)


def test_the_shape_moves_in_the_stated_direction(clips):
    displacement = _centroid(_mask(clips.videos[:, -1])) - _centroid(_mask(clips.videos[:, 0]))  # (dx, dy)
    expected = torch.tensor([[-1, 0], [1, 0], [0, -1], [0, 1]])[clips.labels[:, 2]]  # rows grow downwards
    along = (displacement * expected).sum(dim=1)
    across = (displacement * expected.flip(1)).sum(dim=1)
    assert (along > 32 / 4 - 1).all() and (along < 32 / 3 + 1).all()  # travels a quarter to a third of the frame
    assert (across.abs() < 0.5).all()


def test_the_shape_has_its_colour_on_black(clips):
    mask = _mask(clips.videos)[:, :, None].expand_as(clips.videos)
    pixels = clips.videos.transpose(1, 2).reshape(600, 3, -1)
    shape_pixels = mask.transpose(1, 2).reshape(600, 3, -1)
    mean_colour = (pixels * shape_pixels).sum(-1) / shape_pixels.sum(-1)
    torch.testing.assert_close(mean_colour, RGB[clips.labels[:, 1]])
    assert (clips.videos[~mask] == -1).all()


def test_the_shape_stays_whole_inside_the_frame(clips):
    """Each frame shows the full analytic area of its shape (a cut shape would lose area), within pixelation."""
    r = RADIUS * 32
    expected = torch.tensor([math.pi * r ** 2, 4 * r ** 2, 2 * r ** 2])[clips.labels[:, 0]]
    area = _mask(clips.videos).sum(dim=(-2, -1)).float()  # [clips, frames]
    assert ((area / expected[:, None] - 1).abs() < 0.15).all()


def test_the_three_shapes_are_different_shapes(clips):
    """Area triangle < circle < square; bounding-box fill about 1/2, pi/4 and 1; the triangle is widest at the base."""
    mask = _mask(clips.videos[:, 0])
    area = mask.sum(dim=(-2, -1)).float()
    rows, cols = mask.any(dim=-1), mask.any(dim=-2)
    fill = area / (rows.sum(-1) * cols.sum(-1))
    shape = clips.labels[:, 0]
    mean_area = [area[shape == s].mean() for s in range(3)]
    assert mean_area[2] < mean_area[0] < mean_area[1]
    for s, expected in enumerate((math.pi / 4, 1.0, 0.5)):
        assert (fill[shape == s] - expected).abs().max() < 0.1
    for m in mask[shape == 2]:
        widths = m.sum(dim=-1)[m.any(dim=-1)]
        assert widths[0] < widths[-1] and (widths.diff() >= 0).all()


def test_paths_from_the_centre_start_there_and_show_their_direction_in_a_still_frame(clips):
    centred = MovingShapes(frames=8, size=32, start="centre").sample(600, torch.Generator().manual_seed(0))
    expected = torch.tensor([[-1, 0], [1, 0], [0, -1], [0, 1]])
    where = {}
    for name, data in (("anywhere", clips), ("centre", centred)):
        axis = expected[data.labels[:, 2]]
        offset = _centroid(_mask(data.videos)) - 15.5  # [clips, frames, (x, y)] from the frame's centre
        where[name] = (offset * axis[:, None]).sum(dim=-1)  # along the direction of motion
        across = (offset[:, 0] * axis.flip(1)).sum(dim=-1)
        assert across.abs().max() > 8  # the other axis keeps its random place in both
    # from the centre: within half a radius of it (+ a triangle's centroid, a third of a radius below its box's
    # centre, + a pixel); anywhere: as far back as the path allows
    assert where["centre"][:, 0].abs().max() < 32 * RADIUS * (1 / 2 + 1 / 3) + 1 and where["anywhere"][:, 0].min() < -8
    # a still frame, any of the clip's: its place says nothing of the direction, or, from the centre, it does
    assert where["anywhere"].mean().abs() < 1 and where["centre"].mean() > 3
    with pytest.raises(ValueError, match="start must be one of"):
        MovingShapes(start="middle")

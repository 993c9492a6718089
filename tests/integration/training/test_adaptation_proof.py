"""The adaptation proof's numbers: control accuracy is the IoU of the generated shape with the given one (every
frame for a layout, the first for an image), read through a generated clip's own background; the table sets (b) and
(c) against (a) at the same steps."""

import torch

from animatelcm.training.proof.adaptation import control_accuracy, iou, table
from animatelcm.training.proof.evaluation import ClipClassifier
from animatelcm.training.shapes import MovingShapes

READERS = [ClipClassifier(period=2)]  # only its background estimate is used: untrained is enough
CLIPS = MovingShapes(frames=4, size=32).sample(6, torch.Generator().manual_seed(0)).videos


def test_iou_of_masks():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2], b[0, 1:3] = True, True  # 4 shared of 12
    torch.testing.assert_close(iou(a, b), torch.tensor([1 / 3, 1.0]))  # two empty masks agree


def test_a_clip_that_follows_its_condition_scores_100_and_a_shifted_or_empty_one_less():
    assert control_accuracy("layout", CLIPS, CLIPS, READERS) == 100.0
    background = (CLIPS == -1).all(dim=2, keepdim=True)
    on_grey = torch.where(background, torch.full_like(CLIPS, -0.3), CLIPS)  # another background, the same shapes
    assert control_accuracy("layout", on_grey, CLIPS, READERS) == 100.0
    shifted = torch.roll(CLIPS, shifts=4, dims=-1)
    assert 0 < control_accuracy("layout", shifted, CLIPS, READERS) < 80
    assert control_accuracy("layout", torch.full_like(CLIPS, -1), CLIPS, READERS) == 0.0


def test_an_image_condition_is_scored_on_the_first_frame_only():
    later_frames_moved = CLIPS.clone()
    later_frames_moved[:, 1:] = torch.roll(CLIPS[:, 1:], shifts=6, dims=-1)
    assert control_accuracy("image", later_frames_moved, CLIPS, READERS) == 100.0
    assert control_accuracy("layout", later_frames_moved, CLIPS, READERS) < 100.0


def test_the_table_sets_b_and_c_against_a_at_the_same_steps():
    row = {"condition": "layout", "sampler": "lcm", "cfg": 1.0, "mean": 50.0, "direction": 25.0, "temporal": 99.0,
           "ms_per_clip": 10.0}
    rows = [{**row, "model": "(a) zero-shot", "steps": 1, "control": 40.0},
            {**row, "model": "(a) zero-shot", "steps": 2, "control": 50.0},
            {**row, "model": "(b) adapted", "steps": 2, "control": 62.5},
            {**row, "model": "(c) scratch", "steps": 1, "control": 30.0}]
    lines = table(rows).splitlines()
    assert "| (b) adapted | lcm | 2 | 1 | 62.5 | +12.5 |" in lines[4]
    assert "| (c) scratch | lcm | 1 | 1 | 30.0 | -10.0 |" in lines[5]
    assert "| 40.0 |  |" in lines[2]

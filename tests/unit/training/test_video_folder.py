"""Your own videos as training data: clips with their captions, cropped square, and clear errors for a bad folder."""

import numpy as np
import pytest
import torch

from animatelcm.training.video_folder import VideoFolder
from animatelcm.video.writer import VideoSettings, write_video


def clip(path, frames, width=48, height=32):
    """A video whose frame k is uniformly grey level 10 k, with a white column in the centre."""
    video = np.zeros((frames, height, width, 3), dtype=np.uint8)
    for k in range(frames):
        video[k] = 10 * k
    video[:, :, width // 2 - 2: width // 2 + 2] = 255
    write_video(str(path), iter(video), VideoSettings(format="mp4", crf=0))


@pytest.fixture
def folder(tmp_path):
    clip(tmp_path / "one.mp4", 12)
    (tmp_path / "one.txt").write_text("a grey clip\n")
    return tmp_path


def test_clips_come_with_their_captions_cropped_square_and_in_order(folder):
    data = VideoFolder(str(folder), frames=4, size=16, stride=2)
    clips = data.sample(3, torch.Generator().manual_seed(0))
    assert clips.videos.shape == (3, 4, 3, 16, 16) and clips.captions == ["a grey clip"] * 3
    assert clips.videos.min() >= -1 and clips.videos.max() <= 1
    corner = (clips.videos[:, :, 0, 0, 0] + 1) * 127.5  # grey level of each frame: 10 k
    steps = corner[:, 1:] - corner[:, :-1]
    assert torch.allclose(steps, torch.full_like(steps, 20.0), atol=3)  # stride 2: 20 levels a frame
    assert (clips.videos[:, :, :, :, 7:9] > 0.9).all()  # the centre column survives the centre crop


def test_a_folder_without_captions_or_videos_is_refused_with_the_fix(tmp_path, folder):
    with pytest.raises(ValueError, match="no such folder"):
        VideoFolder(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no videos"):
        VideoFolder(str(empty))
    clip(folder / "two.mp4", 4)
    with pytest.raises(ValueError, match=r"expected two\.txt next to it"):
        VideoFolder(str(folder))


def test_a_video_too_short_for_the_clip_says_what_to_lower(folder):
    data = VideoFolder(str(folder), frames=8, size=16, stride=2)
    with pytest.raises(ValueError, match="12 frames, fewer than the 15.*lower data.frames or data.stride"):
        data.sample(1, torch.Generator().manual_seed(0))

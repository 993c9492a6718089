"""video.reader: frame choice, resampling, resizing and errors, on files written with PyAV and Pillow directly."""

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from animatelcm.video.reader import (FrameSelection, Resize, VideoReadError, natural_key, read_image_sequence,
                                     read_video, target_size)

LEVELS = 16  # frame i is grey level 8 + 15 * i: far enough apart to tell frames apart after H.264


def level_of(frame) -> int:
    return int(round((float(frame.mean()) - 8) / 15))


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    """16 frames at 8 fps, 64x48, written by PyAV itself."""
    path = tmp_path_factory.mktemp("videos") / "grey.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "0"}
        for i in range(LEVELS):
            frame = np.full((48, 64, 3), 8 + 15 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return str(path)


@pytest.fixture(scope="module")
def gif(tmp_path_factory):
    """6 frames, 100 ms each except the third (300 ms), written by Pillow."""
    path = tmp_path_factory.mktemp("gifs") / "grey.gif"
    frames = [Image.new("RGB", (20, 12), (8 + 15 * i,) * 3) for i in range(6)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[100, 100, 300, 100, 100, 100], loop=0)
    return str(path)


def test_reads_every_frame_with_the_source_rate(mp4):
    video = read_video(mp4, FrameSelection(), Resize(multiple_of_8=False))
    assert video.frames.shape == (16, 48, 64, 3) and video.frames.dtype == np.uint8
    assert [level_of(f) for f in video.frames] == list(range(16))
    assert video.frame_rate == video.source_frame_rate == 8


def test_skip_then_every_nth_then_cap(mp4):
    video = read_video(mp4, FrameSelection(frame_load_cap=3, skip_first_frames=2, select_every_nth=3))
    assert [level_of(f) for f in video.frames] == [2, 5, 8]
    assert video.frame_rate == pytest.approx(8 / 3)


def test_video_info_gives_the_source_and_the_loaded_frames(mp4, gif):
    video = read_video(mp4, FrameSelection(frame_load_cap=3, skip_first_frames=2, select_every_nth=3),
                       Resize(width=32, multiple_of_8=True))
    assert video.info() == pytest.approx({
        "source_fps": 8.0, "source_frame_count": 16, "source_duration": 2.0, "source_width": 64, "source_height": 48,
        "loaded_fps": 8 / 3, "loaded_frame_count": 3, "loaded_duration": 3 / (8 / 3), "loaded_width": 32,
        "loaded_height": 24})
    animated = read_video(gif, FrameSelection(force_rate=10), Resize(multiple_of_8=False))
    assert animated.info() == pytest.approx({
        "source_fps": 7.5, "source_frame_count": 6, "source_duration": 0.8, "source_width": 20, "source_height": 12,
        "loaded_fps": 10.0, "loaded_frame_count": 8, "loaded_duration": 0.8, "loaded_width": 20, "loaded_height": 12})


@pytest.mark.parametrize("rate,expected", [(4, [0, 2, 4, 6, 8, 10, 12, 14]),
                                           (16, [i // 2 for i in range(32)]),
                                           (6, [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14])])
def test_force_rate_repeats_or_drops_frames_by_time(mp4, rate, expected):
    video = read_video(mp4, FrameSelection(force_rate=rate))
    assert [level_of(f) for f in video.frames] == expected and video.frame_rate == rate


def test_force_rate_applies_before_skip_and_nth(mp4):
    video = read_video(mp4, FrameSelection(force_rate=4, skip_first_frames=1, select_every_nth=2))
    assert [level_of(f) for f in video.frames] == [2, 6, 10, 14] and video.frame_rate == 2


def test_animated_gif_uses_each_frames_own_duration(gif):
    video = read_video(gif, FrameSelection(), Resize(multiple_of_8=False))
    assert video.frames.shape == (6, 12, 20, 3) and [level_of(f) for f in video.frames] == list(range(6))
    assert video.source_frame_rate == pytest.approx(6 / 0.8)
    at_10_fps = read_video(gif, FrameSelection(force_rate=10), Resize(multiple_of_8=False))
    assert [level_of(f) for f in at_10_fps.frames] == [0, 1, 2, 2, 2, 3, 4, 5]


def test_animated_webp(tmp_path):
    path = tmp_path / "a.webp"
    frames = [Image.new("RGB", (16, 16), (8 + 15 * i,) * 3) for i in range(4)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=125, lossless=True)
    video = read_video(str(path))
    assert [level_of(f) for f in video.frames] == [0, 1, 2, 3] and video.frame_rate == 8


@pytest.mark.parametrize("source,resize,expected", [
    ((100, 60), Resize(), (104, 64)),
    ((100, 60), Resize(multiple_of_8=False), (100, 60)),
    ((640, 360), Resize(width=512), (512, 288)),
    ((640, 360), Resize(height=256), (456, 256)),
    ((640, 360), Resize(width=300, height=200, multiple_of_8=False), (300, 200)),
    ((5, 3), Resize(), (8, 8)),
])
def test_target_size(source, resize, expected):
    assert target_size(*source, resize) == expected


def test_frames_are_resized_as_they_are_read(mp4):
    video = read_video(mp4, FrameSelection(frame_load_cap=2), Resize(width=32))
    assert video.frames.shape == (2, 24, 32, 3) and [level_of(f) for f in video.frames] == [0, 1]


@pytest.mark.parametrize("name,content,message", [
    ("garbage.mp4", b"this is not a video" * 50, "garbage.mp4: PyAV cannot open it"),
    ("empty.mp4", b"", "empty.mp4: PyAV cannot open it"),
    ("garbage.gif", b"GIF89a-broken", "garbage.gif: Pillow cannot read it"),
])
def test_unreadable_files_are_named_with_a_fix(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoReadError, match=message):
        read_video(str(path))


def test_missing_file_and_over_eager_skip(tmp_path, mp4):
    with pytest.raises(VideoReadError, match="nothing.mp4: no such file"):
        read_video(str(tmp_path / "nothing.mp4"))
    with pytest.raises(VideoReadError, match="skip_first_frames=40 skips all 16 frames"):
        read_video(mp4, FrameSelection(skip_first_frames=40))


def test_image_sequences_sort_numbers_by_value_and_keep_the_selection_rules(tmp_path):
    names = ["shot_10.png", "shot_2.png", "Shot_1.png", "shot_02b.png", "notes.txt"]
    assert sorted(names[:4], key=natural_key) == ["Shot_1.png", "shot_2.png", "shot_02b.png", "shot_10.png"]
    for i in (1, 2, 10, 3):
        Image.new("RGB", (16, 8), (i, 0, 0)).save(tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    video = read_image_sequence(str(tmp_path), 4.0, FrameSelection(skip_first_frames=1), Resize(multiple_of_8=False))
    assert [int(f[0, 0, 0]) for f in video.frames] == [2, 3, 10] and video.frame_rate == 4.0
    assert video.start_time == pytest.approx(0.25) and video.info()["source_frame_count"] == 4

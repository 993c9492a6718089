"""Files written by video.writer, read back with PyAV and Pillow (independent readers)."""

import json

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from animatelcm.video.writer import FORMATS, VideoSettings, extension, pad_to_even, pingpong, write_video

# Solid colours a GIF palette holds exactly, one per frame, so frame order can be read back.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def solid_frames(colours=COLOURS, size=(24, 32)):
    return [np.full((*size, 3), colour, dtype=np.uint8) for colour in colours]


def ramp_frames(count=12, size=(48, 64)):
    """Frames with a spatial pattern and a per-frame brightness step, which survive lossy coding recognisably."""
    y, x = np.mgrid[:size[0], :size[1]]
    return [np.stack([(x * 4) % 256, (y * 4) % 256, np.full_like(x, 16 * i)], -1).astype(np.uint8)
            for i in range(count)]


def test_pingpong_returns_without_repeating_the_ends():
    assert pingpong([0, 1, 2, 3]) == [0, 1, 2, 3, 2, 1]
    assert pingpong([0]) == [0]


def test_mp4_is_h264_yuv420p_with_the_frame_count_rate_and_metadata(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = ramp_frames(12)
    meta = {"prompt": {"1": {"class_type": "X"}}, "workflow": {"nodes": []}}
    assert write_video(str(path), frames, VideoSettings("mp4", frame_rate=8, crf=10), meta) == 12
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 8
        assert json.loads(container.metadata["prompt"]) == meta["prompt"]
        assert json.loads(container.metadata["workflow"]) == meta["workflow"]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 12
    # Lossy, but each frame is still closest to its own source frame.
    for i, frame in enumerate(decoded):
        errors = [np.abs(frame.astype(int) - source).mean() for source in frames]
        assert int(np.argmin(errors)) == i and errors[i] < 4


def test_odd_sizes_are_padded_for_h264_by_repeating_the_edge(tmp_path):
    frame = np.zeros((17, 33, 3), np.uint8)
    frame[:, -1] = 200  # the last column, which the pad repeats
    assert pad_to_even(frame).shape == (18, 34, 3) and (pad_to_even(frame)[:, -2:] == 200).all()
    path = tmp_path / "odd.mp4"
    write_video(str(path), [frame] * 3, VideoSettings("mp4", frame_rate=8))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (34, 18)
        assert sum(1 for _ in container.decode(video=0)) == 3


def test_webm_is_vp9_with_its_frames(tmp_path):
    path = tmp_path / "clip.webm"
    write_video(str(path), ramp_frames(6), VideoSettings("webm", frame_rate=12, crf=30), {"prompt": {"a": 1}})
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
        tags = {key.lower(): value for key, value in container.metadata.items()}  # Matroska upper-cases tag names
        assert json.loads(tags["prompt"]) == {"a": 1}
        assert sum(1 for _ in container.decode(video=0)) == 6


def read_animation(path):
    frames, durations = [], []
    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            frames.append(np.asarray(frame.convert("RGB")))  # decodes the frame, which sets its duration (WebP)
            durations.append(frame.info.get("duration"))
        return frames, durations, image.info.get("loop")


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animated_images_keep_frame_order_pingpong_and_rate(tmp_path, fmt):
    path = tmp_path / f"clip.{fmt}"
    write_video(str(path), pingpong(solid_frames()), VideoSettings(fmt, frame_rate=10, quality=100))
    frames, durations, _ = read_animation(path)
    order = [COLOURS.index(tuple(int(c) for c in frame[5, 5])) for frame in frames]
    assert order == [0, 1, 2, 3, 4, 3, 2, 1]
    assert durations == [100] * 8


@pytest.mark.parametrize("fmt", ["gif", "webp"])
@pytest.mark.parametrize("plays", [0, 1, 3])
def test_loop_count_is_the_number_of_plays(tmp_path, fmt, plays):
    path = tmp_path / f"loop{plays}.{fmt}"
    write_video(str(path), solid_frames()[:2], VideoSettings(fmt, frame_rate=8, loop_count=plays))
    _, _, loop = read_animation(path)
    if fmt == "gif":  # GIF stores the repeats after the first play; no loop block = play once
        assert loop == (None if plays == 1 else max(plays - 1, 0))
    else:  # WebP stores the plays, 0 = forever
        assert loop == plays


def test_gif_and_webp_carry_the_workflow_in_a_first_frame_png(tmp_path):
    meta = {"prompt": {"7": {"inputs": {}}}, "workflow": {"version": 0.4}}
    write_video(str(tmp_path / "a.gif"), solid_frames(), VideoSettings("gif"), meta, poster_path=str(tmp_path / "a.png"))
    with Image.open(tmp_path / "a.png") as poster:
        assert json.loads(poster.text["workflow"]) == meta["workflow"]
        assert json.loads(poster.text["prompt"]) == meta["prompt"]
        assert tuple(np.asarray(poster.convert("RGB"))[0, 0]) == COLOURS[0]


def test_bad_requests_fail_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(str(tmp_path / "e.mp4"), [], VideoSettings("mp4"))
    with pytest.raises(ValueError, match="unknown video format 'avi'"):
        write_video(str(tmp_path / "e.avi"), solid_frames(), VideoSettings("avi"))
    with pytest.raises(ValueError, match="frame 1 is 8x8, the first was 32x24"):
        write_video(str(tmp_path / "m.mp4"), [solid_frames()[0], np.zeros((8, 8, 3), np.uint8)], VideoSettings("mp4"))


@pytest.mark.parametrize("file_format, codec, pix_fmt, tag", [
    ("mp4 h265", "hevc", "yuv420p", "hvc1"), ("mp4 h265 10-bit", "hevc", "yuv420p10le", "hvc1"),
    ("mp4 av1", "av1", "yuv420p", "av01"), ("mp4 av1 10-bit", "av1", "yuv420p10le", "av01"),
    ("mov prores 422 hq", "prores", "yuv422p10le", "apch"), ("mkv ffv1 lossless", "ffv1", "bgr0", None),
    ("mov png lossless", "png", "rgb24", "png ")])
def test_each_named_codec_writes_its_stream(tmp_path, file_format, codec, pix_fmt, tag):
    if file_format not in FORMATS:
        pytest.skip(f"this PyAV has no encoder for {file_format}")
    path = tmp_path / f"clip.{extension(file_format)}"
    assert write_video(str(path), ramp_frames(6), VideoSettings(file_format, frame_rate=8)) == 6
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoders = {"av1": ("av1", "libdav1d")}.get(codec, (codec,))  # AV1 is read by dav1d where present
        assert stream.codec_context.name in decoders and stream.codec_context.pix_fmt == pix_fmt
        assert tag is None or stream.codec_context.codec_tag == tag
        assert sum(1 for _ in container.decode(video=0)) == 6

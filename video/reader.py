"""Read a video (PyAV), an animated GIF/WebP or a folder of numbered images (Pillow) into uint8 RGB frames, choosing
frames as it streams.

Frames are resampled, skipped, thinned and capped while decoding, and resized one by one, so a long source never
has to fit in memory: only the frames kept do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import cv2
import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")
ANIMATED_IMAGE_EXTENSIONS = (".gif", ".webp")
EXTENSIONS = VIDEO_EXTENSIONS + ANIMATED_IMAGE_EXTENSIONS
SEQUENCE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_EPS = 1e-6  # seconds: timestamps are floats


class VideoReadError(ValueError):
    """A file that gives no frames; the message names the file and what to do."""


@dataclass(frozen=True)
class FrameSelection:
    frame_load_cap: int = 0  # 0 = every frame
    skip_first_frames: int = 0
    select_every_nth: int = 1
    force_rate: float = 0.0  # 0 = the source's rate


@dataclass(frozen=True)
class Resize:
    width: int = 0  # 0 = from the source (keeping the aspect ratio when only the other side is given)
    height: int = 0
    multiple_of_8: bool = True  # SD latents are 1/8 of the image size


@dataclass(frozen=True)
class SourceInfo:
    """What the file says of itself, before any frame is chosen."""

    frame_rate: float
    frame_count: int  # the container's count for a video (some containers estimate it), exact for GIF/WebP
    duration: float  # seconds
    width: int
    height: int


@dataclass
class LoadedVideo:
    frames: np.ndarray | None  # uint8 [frames, height, width, 3]; None when they were handed over in chunks
    frame_rate: float  # of the frames returned
    source: SourceInfo
    start_time: float = 0.0  # seconds into the source where the first frame returned is shown
    count: int = 0  # frames returned
    size: tuple[int, int] = (0, 0)  # their width and height

    def __post_init__(self):
        if self.frames is not None:
            self.count, self.size = self.frames.shape[0], (self.frames.shape[2], self.frames.shape[1])

    @property
    def source_frame_rate(self) -> float:
        return self.source.frame_rate

    @property
    def duration(self) -> float:
        """The span of the source the frames returned stand for, from `start_time`."""
        return self.count / self.frame_rate

    def info(self) -> dict[str, float | int]:
        """The source's and the loaded frames' rate, count, duration and size, under VideoHelperSuite's
        VHS_VIDEOINFO keys (`source_fps`... `loaded_height`), so nodes written for its Load Video read it."""
        width, height = self.size
        return {"source_fps": self.source.frame_rate, "source_frame_count": self.source.frame_count,
                "source_duration": self.source.duration, "source_width": self.source.width,
                "source_height": self.source.height, "loaded_fps": self.frame_rate, "loaded_frame_count": self.count,
                "loaded_duration": self.duration, "loaded_width": width, "loaded_height": height}


# Receives the frames chosen so far, uint8 [n, height, width, 3], and what the file says of itself, when a reader is
# told to hand them over in chunks.
ChunkHandler = Callable[[np.ndarray, "SourceInfo"], None]


def read_video(path: str, selection: FrameSelection = FrameSelection(), resize: Resize = Resize(),
               on_chunk: ChunkHandler | None = None, chunk_size: int = 16) -> LoadedVideo:
    """The chosen frames of a video or animated image; with `on_chunk`, handed over `chunk_size` at a time as they
    are decoded and not kept, so a long source never exists whole (the result's `frames` is then None)."""
    return _selected(os.path.basename(path), *_open(path), selection, resize, on_chunk, chunk_size)


def read_image_sequence(folder: str, frame_rate: float, selection: FrameSelection = FrameSelection(),
                        resize: Resize = Resize()) -> LoadedVideo:
    """The images of `folder` in natural order (frame2 before frame10) as frames shown at `frame_rate`."""
    return _selected(os.path.basename(os.path.normpath(folder)), *_open_image_sequence(folder, frame_rate), selection,
                     resize)


def _selected(name: str, source: SourceInfo, timed: Iterator[tuple[float, float, np.ndarray]],
              selection: FrameSelection, resize: Resize, on_chunk: ChunkHandler | None = None,
              chunk_size: int = 16) -> LoadedVideo:
    source_rate = source.frame_rate
    if selection.force_rate > 0:
        frames, rate = _resample(timed, selection.force_rate), selection.force_rate
    else:
        frames, rate = ((start, frame) for start, _, frame in timed), source_rate
    kept, read, start_time, count, size = [], 0, 0.0, 0, (0, 0)  # `read` tells an empty file from an eager skip
    try:
        for read, (shown_at, frame) in enumerate(frames, start=1):
            skipped = read - 1 - selection.skip_first_frames
            if skipped < 0 or skipped % selection.select_every_nth:
                continue
            start_time = shown_at if not count else start_time
            kept.append(_resize(frame, resize))
            count, size = count + 1, kept[-1].shape[1::-1]
            if on_chunk is not None and len(kept) == chunk_size:
                on_chunk(np.stack(kept), source)
                kept = []
            if count == selection.frame_load_cap:
                break
    finally:
        timed.close()  # releases the decoder at once when the cap stops reading early
    if read == 0:
        raise VideoReadError(f"{name}: the file holds no frames (empty or damaged). Re-export it and upload it again.")
    if not count:
        raise VideoReadError(
            f"{name}: no frames left: skip_first_frames={selection.skip_first_frames} skips all {read} "
            f"frames (at {rate:g} fps). Lower skip_first_frames.")
    if on_chunk is not None and kept:
        on_chunk(np.stack(kept), source)
    frames_kept = np.stack(kept) if on_chunk is None else None
    return LoadedVideo(frames_kept, rate / selection.select_every_nth, source, start_time, count, size)


def expected_frames(source: SourceInfo, selection: FrameSelection) -> int:
    """About how many frames a selection keeps of a source (its frame count may be an estimate): for progress."""
    ticks = source.duration * selection.force_rate if selection.force_rate > 0 else source.frame_count
    kept = max(0, -(-(round(ticks) - selection.skip_first_frames) // selection.select_every_nth))
    return min(kept, selection.frame_load_cap) if selection.frame_load_cap else kept


def target_size(width: int, height: int, resize: Resize) -> tuple[int, int]:
    """Output size for a `width` x `height` source."""
    if resize.width and resize.height:
        width, height = resize.width, resize.height
    elif resize.width:
        width, height = resize.width, height * resize.width / width
    elif resize.height:
        width, height = width * resize.height / height, resize.height
    if resize.multiple_of_8:
        return max(8, int(width / 8 + 0.5) * 8), max(8, int(height / 8 + 0.5) * 8)
    return max(1, int(width + 0.5)), max(1, int(height + 0.5))


def _resize(frame: np.ndarray, resize: Resize) -> np.ndarray:
    height, width = frame.shape[:2]
    size = target_size(width, height, resize)
    if size == (width, height):
        return frame
    shrinking = size[0] * size[1] < width * height
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _open(path: str) -> tuple[SourceInfo, Iterator[tuple[float, float, np.ndarray]]]:
    """(what the file says of itself, iterator of (start s, end s, RGB frame))."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise VideoReadError(f"{name}: no such file ({path}). Upload it or put it in ComfyUI's input folder.")
    if path.lower().endswith(ANIMATED_IMAGE_EXTENSIONS):
        return _open_animated_image(path, name)
    return _open_video(path, name)


def _open_video(path: str, name: str):
    """Decoded by PyAV, the ffmpeg that writes the pack's videos, so every format it saves reads back (OpenCV's
    builds differ: some lack AV1)."""
    def unreadable(reason) -> VideoReadError:
        return VideoReadError(f"{name}: PyAV cannot open it as a video ({reason}): not a video, or damaged. "
                              f"Re-encode it as H.264 mp4 or VP9 webm.")

    try:
        container = av.open(path)
    except av.FFmpegError as error:
        raise unreadable(getattr(error, "strerror", None) or error) from error
    if not container.streams.video:
        container.close()
        raise unreadable("no video stream")
    stream = container.streams.video[0]
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    rate = rate if np.isfinite(rate) and rate > 0 else 24.0  # some containers do not say; 24 is the common case
    duration = float(stream.duration * stream.time_base) if stream.duration else \
        (container.duration / av.time_base if container.duration else 0.0)
    count = stream.frames or round(duration * rate)
    source = SourceInfo(rate, count, count / rate, stream.codec_context.width, stream.codec_context.height)

    def frames():
        try:
            for index, frame in enumerate(container.decode(stream)):
                yield index / rate, (index + 1) / rate, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise VideoReadError(f"{name}: decoding stopped ({getattr(error, 'strerror', None) or error}): the "
                                 f"file is damaged. Re-encode it.") from error
        finally:
            container.close()

    return source, frames()


def _open_animated_image(path: str, name: str):
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise VideoReadError(f"{name}: Pillow cannot read it as an animated image ({error}). "
                             f"Re-export it as GIF or WebP.") from error
    durations = []
    for frame in ImageSequence.Iterator(image):
        frame.load()  # WebP sets a frame's duration only once it is decoded
        durations.append(frame.info.get("duration") or 100)  # ms; browsers show 0 as 100 ms too
    rate = 1000 * len(durations) / sum(durations)
    source = SourceInfo(rate, len(durations), sum(durations) / 1000, *image.size)

    def frames():
        start = 0.0
        try:
            for frame, duration in zip(ImageSequence.Iterator(image), durations):
                end = start + duration / 1000
                yield start, end, np.asarray(frame.convert("RGB"))
                start = end
        finally:
            image.close()

    return source, frames()


def natural_key(name: str) -> list:
    """Sort key that orders the numbers inside names by value: frame2 < frame10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def _open_image_sequence(folder: str, rate: float):
    name = os.path.basename(os.path.normpath(folder))
    if not os.path.isdir(folder):
        raise VideoReadError(f"{name}: no such folder ({folder}). Give a folder of numbered images.")
    if rate <= 0:
        raise VideoReadError(f"{name}: frame_rate must be positive, got {rate}")
    files = sorted((f for f in os.listdir(folder) if f.lower().endswith(SEQUENCE_EXTENSIONS)
                    and os.path.isfile(os.path.join(folder, f))), key=natural_key)
    if not files:
        raise VideoReadError(f"{name}: the folder holds no images ({', '.join(SEQUENCE_EXTENSIONS)}). Put the "
                             f"numbered frames in it, or choose the folder that holds them.")
    try:
        with Image.open(os.path.join(folder, files[0])) as first:
            size = first.size
    except (UnidentifiedImageError, OSError) as error:
        raise VideoReadError(f"{name}/{files[0]}: Pillow cannot read it ({error}). Re-export the frame.") from error
    source = SourceInfo(rate, len(files), len(files) / rate, *size)

    def frames():
        for index, file in enumerate(files):
            try:
                with Image.open(os.path.join(folder, file)) as image:
                    frame = np.asarray(image.convert("RGB"))
            except (UnidentifiedImageError, OSError) as error:
                raise VideoReadError(f"{name}/{file}: Pillow cannot read it ({error}). Re-export the frame or "
                                     f"remove it from the folder.") from error
            if frame.shape[1::-1] != size:
                raise VideoReadError(f"{name}/{file}: {frame.shape[1]}x{frame.shape[0]}, but the first frame "
                                     f"({files[0]}) is {size[0]}x{size[1]}. Give every frame the same size.")
            yield index / rate, (index + 1) / rate, frame

    return source, frames()


def _resample(timed: Iterator[tuple[float, float, np.ndarray]], rate: float) -> Iterator[tuple[float, np.ndarray]]:
    """(tick time, the frame shown then) at each tick of a `rate` clock: source frames are repeated or dropped."""
    tick = 0
    for _, end, frame in timed:
        while tick / rate < end - _EPS:
            yield tick / rate, frame
            tick += 1


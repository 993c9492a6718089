"""Write frames (uint8 HxWx3 arrays) as mp4/H.264 or webm/VP9 through PyAV, and as animated GIF/WebP through Pillow.

No ffmpeg binary is needed: PyAV carries its own libx264/libvpx. Frames arrive as an iterable, so a caller can decode
and write a long video chunk by chunk.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image, PngImagePlugin

from .audio import AUDIO_CODECS, Sound, add_sound_stream, encode_sound, fitted

FORMATS = ("mp4", "webm", "gif", "webp")
# What browsers play: H.264 in yuv420p (4:4:4 or 10-bit H.264 does not play in Chromium/Firefox) and VP9.
_CODECS = {"mp4": ("libx264", "yuv420p"), "webm": ("libvpx-vp9", "yuv420p")}


@dataclass(frozen=True)
class VideoSettings:
    format: str = "mp4"
    frame_rate: float = 8.0
    loop_count: int = 0  # plays of a gif/webp; 0 = forever
    crf: int = 19  # mp4 (0-51) and webm (0-63): lower = better and bigger
    quality: int = 90  # webp: 100 = lossless


def pingpong(frames: list) -> list:
    """Forward then backward without repeating the turning points, so a looping player shows no stutter."""
    return list(frames) + list(frames[-2:0:-1])


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """yuv420p stores colour at half resolution, so H.264/VP9 need even sizes: repeat the last row/column."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def write_video(path: str, frames: Iterable[np.ndarray], settings: VideoSettings,
                metadata: dict[str, object] | None = None, poster_path: str | None = None,
                sound: Sound | None = None) -> int:
    """Write `frames` to `path` and return the number of frames written.

    `metadata` (e.g. ComfyUI's prompt and workflow) goes into the mp4/webm container tags; a gif/webp cannot hold it
    in a way ComfyUI reads back, so it goes into `poster_path`, a PNG of the first frame, which loads the workflow
    when dropped on ComfyUI. `sound` goes into an mp4/webm (AAC/Opus), cut or padded with silence to the video's
    length; a gif/webp has no place for it (`has_sound`).
    """
    if settings.format not in FORMATS:
        raise ValueError(f"unknown video format {settings.format!r}: use one of {', '.join(FORMATS)}")
    if settings.frame_rate <= 0:
        raise ValueError(f"frame rate must be positive, got {settings.frame_rate}")
    if settings.format in _CODECS:
        return _write_av(path, iter(frames), settings, metadata, sound)
    return _write_pillow(path, list(frames), settings, metadata, poster_path)


def has_sound(file_format: str) -> bool:
    return file_format in AUDIO_CODECS


def _write_av(path: str, frames: Iterator[np.ndarray], settings: VideoSettings, metadata, sound: Sound | None) -> int:
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    codec, pix_fmt = _CODECS[settings.format]
    options = {"movflags": "+faststart+use_metadata_tags"} if settings.format == "mp4" else {}
    count = 0
    with av.open(path, mode="w", format=settings.format, options=options) as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = json.dumps(value)
        stream = container.add_stream(codec, rate=Fraction(round(settings.frame_rate * 1000), 1000))
        height, width = pad_to_even(first).shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"crf": str(settings.crf)}
        if settings.format == "webm":
            stream.bit_rate = 0  # constant quality: libvpx honours crf only without a target bit rate
        audio = add_sound_stream(container, settings.format, sound) if sound is not None else None
        for frame in itertools.chain([first], frames):
            frame = pad_to_even(frame)
            if frame.shape[:2] != (height, width):
                raise ValueError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, the first was {width}x{height}")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            count += 1
        container.mux(stream.encode(None))
        if audio is not None:  # once the frame count, so the video's length, is known
            encode_sound(container, audio, fitted(sound, count / settings.frame_rate))
    return count


def _write_pillow(path: str, frames: list[np.ndarray], settings: VideoSettings, metadata, poster_path) -> int:
    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(frame) for frame in frames]
    options = {"save_all": True, "append_images": images[1:], "duration": round(1000 / settings.frame_rate)}
    if settings.format == "gif":
        # GIF's loop field counts repeats after the first play, and its absence means play once.
        if settings.loop_count != 1:
            options["loop"] = max(settings.loop_count - 1, 0)
        options["disposal"] = 2
    else:
        options.update(loop=settings.loop_count, quality=settings.quality, lossless=settings.quality >= 100, method=4)
    images[0].save(path, format=settings.format.upper(), **options)
    if metadata and poster_path:
        _write_poster(poster_path, images[0], metadata)
    return len(images)


def _write_poster(path: str, image: Image.Image, metadata: dict[str, object]) -> None:
    """The first frame as PNG with ComfyUI's text chunks (one JSON per key), as core SaveImage writes them."""
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_text(key, json.dumps(value))
    image.save(path, format="PNG", pnginfo=info, compress_level=4)


"""Write frames (uint8 HxWx3 arrays) as video through PyAV (H.264, VP9, H.265, AV1, ProRes, FFV1, PNG), and as
animated GIF/WebP through Pillow.

No ffmpeg binary is needed: PyAV carries its own encoders. Frames arrive as an iterable, so a caller can decode
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

from .audio import Sound, add_sound_stream, encode_sound, fitted



@dataclass(frozen=True)
class Codec:
    """How one format is encoded by PyAV's bundled ffmpeg."""

    container: str  # the file extension and the muxer (mkv: matroska)
    encoder: str
    pix_fmt: str
    crf_range: int = 0  # the encoder's crf scale (0: it has none, its quality is fixed)
    options: tuple[tuple[str, str], ...] = ()
    codec_tag: str | None = None


# Chosen by name in ALCM_SaveVideo. mp4 (H.264 yuv420p) and webm (VP9) play in every browser, the others in
# players and editors: H.265 tagged hvc1 (QuickTime and Apple devices need the tag), AV1, ProRes 422 HQ in 10 bits
# for editing, and lossless RGB (FFV1 in mkv, PNG in mov). 10-bit H.265 and AV1 keep smooth gradients without bands.
CODECS = {
    "mp4": Codec("mp4", "libx264", "yuv420p", 51),
    "webm": Codec("webm", "libvpx-vp9", "yuv420p", 63),
    "mp4 h265": Codec("mp4", "libx265", "yuv420p", 51, codec_tag="hvc1"),
    "mp4 h265 10-bit": Codec("mp4", "libx265", "yuv420p10le", 51, codec_tag="hvc1"),
    "mp4 av1": Codec("mp4", "libsvtav1", "yuv420p", 63),
    "mp4 av1 10-bit": Codec("mp4", "libsvtav1", "yuv420p10le", 63),
    "mov prores 422 hq": Codec("mov", "prores_ks", "yuv422p10le", options=(("profile", "3"),)),
    "mkv ffv1 lossless": Codec("mkv", "ffv1", "bgr0"),
    "mov png lossless": Codec("mov", "png", "rgb24"),
}
ANIMATED_IMAGES = ("gif", "webp")
# The formats this PyAV can write: an encoder missing from its ffmpeg build (AV1 is optional) is not offered.
FORMATS = tuple(name for name, codec in CODECS.items() if codec.encoder in av.codecs_available) + ANIMATED_IMAGES


def extension(file_format: str) -> str:
    return CODECS[file_format].container if file_format in CODECS else file_format


@dataclass(frozen=True)
class VideoSettings:
    format: str = "mp4"
    frame_rate: float = 8.0
    loop_count: int = 0  # plays of a gif/webp; 0 = forever
    crf: int = 19  # lower = better and bigger, on the encoder's scale (clipped to it); lossless formats ignore it
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
    if settings.format in CODECS:
        return _write_av(path, iter(frames), settings, metadata, sound)
    return _write_pillow(path, list(frames), settings, metadata, poster_path)


def has_sound(file_format: str) -> bool:
    return file_format in CODECS


def _write_av(path: str, frames: Iterator[np.ndarray], settings: VideoSettings, metadata, sound: Sound | None) -> int:
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    codec = CODECS[settings.format]
    muxer = "matroska" if codec.container == "mkv" else codec.container
    options = {"movflags": "+faststart+use_metadata_tags"} if codec.container in ("mp4", "mov") else {}
    count = 0
    with av.open(path, mode="w", format=muxer, options=options) as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = json.dumps(value)
        stream = container.add_stream(codec.encoder, rate=Fraction(round(settings.frame_rate * 1000), 1000))
        height, width = pad_to_even(first).shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, codec.pix_fmt
        stream.options = dict(codec.options)
        if codec.crf_range:
            stream.options |= {"crf": str(min(settings.crf, codec.crf_range))}
        if codec.encoder == "libvpx-vp9":
            stream.bit_rate = 0  # constant quality: libvpx honours crf only without a target bit rate
        if codec.encoder == "libx265":
            stream.options |= {"x265-params": "log-level=error"}
        if codec.codec_tag:
            stream.codec_tag = codec.codec_tag
        audio = add_sound_stream(container, codec.container, sound) if sound is not None else None
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


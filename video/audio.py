"""A video file's sound, read and written with PyAV (no ffmpeg binary): cut to the span of the frames a loader keeps,
fitted to the length of the video it is saved with.

Sound is float32 planar [channels, samples], what ComfyUI's AUDIO holds per batch item.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import av
import numpy as np

from .reader import ANIMATED_IMAGE_EXTENSIONS

SILENCE_RATE = 44100  # Hz: what a clip without sound gets, CD rate as core's audio nodes default to


@dataclass(frozen=True)
class Sound:
    samples: np.ndarray  # float32 [channels, samples]
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def layout(self) -> str:
        return "mono" if self.samples.shape[0] == 1 else "stereo"


def silence(duration: float, sample_rate: int = SILENCE_RATE, channels: int = 1) -> Sound:
    return Sound(np.zeros((channels, round(duration * sample_rate)), dtype=np.float32), sample_rate)


def fitted(sound: Sound, duration: float) -> Sound:
    """Exactly `duration` seconds: cut, or padded with silence at the end."""
    length = round(duration * sound.sample_rate)
    samples = sound.samples[:, :length]
    if samples.shape[1] < length:
        samples = np.pad(samples, ((0, 0), (0, length - samples.shape[1])))
    return Sound(np.ascontiguousarray(samples, dtype=np.float32), sound.sample_rate)


def read_sound(path: str, start: float, duration: float) -> Sound | None:
    """The first audio stream's sound from `start` (seconds after the first video frame) for `duration` seconds,
    padded with silence where the stream ends early; mono or stereo (more channels are mixed down to stereo). None
    when the file has no audio stream (an animated image never has one), or one that cannot be decoded (logged)."""
    if path.lower().endswith(ANIMATED_IMAGE_EXTENSIONS):
        return None
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                return None
            return fitted(_decode(container, start, duration), duration)
    except av.FFmpegError as error:
        logging.warning("%s: its sound cannot be read (%s); silence is used", os.path.basename(path), error)
        return None


def _decode(container, start: float, duration: float) -> Sound:
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or SILENCE_RATE
    layout = "mono" if stream.codec_context.channels == 1 else "stereo"
    video = container.streams.video[0] if container.streams.video else None
    origin = float(video.start_time * video.time_base) if video is not None and video.start_time else 0.0
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    first, last = round(start * rate), round((start + duration) * rate)
    channels = 1 if layout == "mono" else 2
    chunks, position = [], None
    for frame in container.decode(stream):
        for converted in resampler.resample(frame):
            if position is None:  # the sample index, from the first video frame, where the sound begins
                position = round(((converted.time or 0.0) - origin) * rate)
                if position > first:  # sound that starts late: silence until then
                    chunks.append(np.zeros((channels, min(position, last) - first), np.float32))
            data = converted.to_ndarray()
            keep = data[:, max(first - position, 0):max(last - position, 0)]
            if keep.shape[1]:
                chunks.append(keep)
            position += data.shape[1]
        if position is not None and position >= last:
            break
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return Sound(samples, rate)


# What each container's audio is encoded with: AAC in mp4/mov (every player), Opus in webm (48 kHz only), FLAC
# (lossless) in mkv.
AUDIO_CODECS = {"mp4": ("aac", None), "mov": ("aac", None), "webm": ("libopus", 48000), "mkv": ("flac", None)}


def add_sound_stream(container, extension: str, sound: Sound):
    """An audio stream for `sound` in a container (by file extension) being written; returns it."""
    codec, rate = AUDIO_CODECS[extension]
    stream = container.add_stream(codec, rate=rate or sound.sample_rate, layout=sound.layout)
    if codec == "aac":
        stream.bit_rate = 192_000
    return stream


def encode_sound(container, stream, sound: Sound) -> None:
    """Encode and mux all of `sound` into `stream`, in the codec's frame size, format and rate."""
    context = stream.codec_context
    resampler = av.AudioResampler(format=context.format.name, layout=sound.layout, rate=context.sample_rate,
                                  frame_size=context.frame_size or None)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound.samples, dtype=np.float32), format="fltp",
                                       layout=sound.layout)
    frame.sample_rate, frame.pts = sound.sample_rate, 0
    for converted in [*resampler.resample(frame), *resampler.resample(None)]:
        container.mux(stream.encode(converted))
    container.mux(stream.encode(None))

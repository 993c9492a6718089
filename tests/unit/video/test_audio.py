"""Sound read from and written into video files, checked with PyAV on clips made here with a known tone."""

import av
import numpy as np
import pytest

from animatelcm.video.audio import Sound, fitted, read_sound, silence
from animatelcm.video.reader import FrameSelection, read_video
from animatelcm.video.writer import VideoSettings, extension, write_video

RATE = 48000


def tone(duration, start, frequency=440.0, rate=RATE, channels=2):
    """Silence, then a sine from `start` seconds on."""
    t = np.arange(round(duration * rate)) / rate
    wave = np.where(t >= start, 0.5 * np.sin(2 * np.pi * frequency * t), 0.0).astype(np.float32)
    return np.repeat(wave[None], channels, axis=0)


def tone_clip(path, frames=24, fps=8, start=1.0, frequency=440.0):
    """An mp4 (H.264 + AAC) written with PyAV alone: frame i is grey level 10 i, the tone begins at `start`."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream("aac", rate=RATE, layout="stereo")
        for i in range(frames):
            image = np.full((32, 32, 3), 10 * i, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        samples = tone(frames / fps, start, frequency)
        size = audio.codec_context.frame_size
        for offset in range(0, samples.shape[1], size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, offset:offset + size]),
                                               format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = RATE, offset
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def decoded_sound(path):
    """(samples [channels, n] float32, rate, audio codec name) of a file, by PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        planar = av.AudioResampler(format="fltp")  # packed formats (flac's s16) come out one row per channel
        chunks = [out.to_ndarray() for frame in container.decode(stream) for out in planar.resample(frame)]
        name, rate = stream.codec_context.name, stream.codec_context.sample_rate
    return np.concatenate(chunks, axis=1), rate, name


def loudness(samples, rate, start, end):
    segment = samples[:, round(start * rate):round(end * rate)]
    return float(np.sqrt(np.mean(segment.astype(np.float64) ** 2)))


def pitch(samples, rate, start, end):
    segment = samples[0, round(start * rate):round(end * rate)]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    return np.fft.rfftfreq(len(segment), 1 / rate)[spectrum.argmax()]


def test_the_sound_of_the_frames_kept_is_cut_from_their_first_frame(tmp_path):
    clip = tone_clip(tmp_path / "tone.mp4")  # 3 s, tone from 1.0 s
    loaded = read_video(str(clip), FrameSelection(frame_load_cap=8, skip_first_frames=4, select_every_nth=1))
    assert loaded.start_time == pytest.approx(0.5) and loaded.duration == pytest.approx(1.0)
    sound = read_sound(str(clip), loaded.start_time, loaded.duration)
    assert sound.sample_rate == RATE and sound.samples.shape == (2, RATE)  # exactly 1.0 s
    # 0.5 s of silence, then the tone: the clip's 1.0 s mark is 0.5 s into what was kept (AAC edges allowed 20 ms).
    assert loudness(sound.samples, RATE, 0.0, 0.48) < 0.01
    assert loudness(sound.samples, RATE, 0.52, 1.0) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert pitch(sound.samples, RATE, 0.52, 1.0) == pytest.approx(440, abs=5)


@pytest.mark.parametrize("selection, start, duration", [
    (FrameSelection(select_every_nth=2, frame_load_cap=6), 0.0, 1.5),  # 6 frames at 4 fps
    (FrameSelection(force_rate=4.0, skip_first_frames=2), 0.5, 2.5),  # 10 frames at 4 fps, from the third tick
])
def test_every_nth_and_rate_changes_keep_the_sound_of_the_span_returned(tmp_path, selection, start, duration):
    clip = tone_clip(tmp_path / "tone.mp4")
    loaded = read_video(str(clip), selection)
    assert (loaded.start_time, loaded.duration) == pytest.approx((start, duration))
    sound = read_sound(str(clip), loaded.start_time, loaded.duration)
    assert sound.duration == pytest.approx(duration)
    onset = 1.0 - start  # where the tone starts in the sound returned
    assert loudness(sound.samples, RATE, 0.0, onset - 0.02) < 0.01
    assert loudness(sound.samples, RATE, onset + 0.02, duration) > 0.3


def test_sound_past_the_end_is_padded_with_silence_and_no_stream_is_none(tmp_path):
    clip = tone_clip(tmp_path / "tone.mp4")
    sound = read_sound(str(clip), 2.5, 1.0)  # the clip ends at 3.0 s
    assert sound.samples.shape == (2, RATE)
    assert loudness(sound.samples, RATE, 0.0, 0.48) > 0.3 and loudness(sound.samples, RATE, 0.52, 1.0) == 0
    silent = tmp_path / "silent.mp4"
    write_video(str(silent), [np.zeros((32, 32, 3), np.uint8)] * 4, VideoSettings("mp4", frame_rate=8))
    assert read_sound(str(silent), 0.0, 0.5) is None
    assert silence(0.5).samples.shape == (1, 22050)


def test_fitted_cuts_or_pads_to_the_length():
    sound = Sound(np.ones((2, 100), np.float32), 100)
    assert fitted(sound, 0.5).samples.shape == (2, 50)
    padded = fitted(sound, 1.5).samples
    assert padded.shape == (2, 150) and padded[:, :100].min() == 1 and padded[:, 100:].max() == 0


@pytest.mark.parametrize("file_format, codec, rate", [("mp4", "aac", 44100), ("webm", "opus", 48000),
                                                       ("mov prores 422 hq", "aac", 44100),
                                                       ("mkv ffv1 lossless", "flac", 44100)])
def test_saved_sound_has_the_tone_at_its_time_and_the_videos_length(tmp_path, file_format, codec, rate):
    """16 frames at 8 fps = 2.0 s of video; the 3 s sound (tone from 1.0 s) is cut to 2.0 s."""
    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(16)]
    path = tmp_path / f"out.{extension(file_format)}"
    sound = Sound(tone(3.0, 1.0, rate=44100), 44100)
    assert write_video(str(path), frames, VideoSettings(file_format, frame_rate=8), sound=sound) == 16
    samples, decoded_rate, name = decoded_sound(path)
    assert name == codec and decoded_rate == rate
    assert samples.shape[1] / rate == pytest.approx(2.0, abs=0.03)  # the codec's frame padding, at most 1024 samples
    assert loudness(samples, rate, 0.05, 0.95) < 0.01
    assert loudness(samples, rate, 1.05, 1.95) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert pitch(samples, rate, 1.05, 1.95) == pytest.approx(440, abs=5)
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16


def test_short_sound_is_padded_to_the_video(tmp_path):
    frames = [np.zeros((32, 32, 3), np.uint8)] * 16
    path = tmp_path / "out.mp4"
    write_video(str(path), frames, VideoSettings("mp4", frame_rate=8), sound=Sound(tone(0.5, 0.0, rate=RATE), RATE))
    samples, rate, _ = decoded_sound(path)
    assert samples.shape[1] / rate == pytest.approx(2.0, abs=0.03)
    assert loudness(samples, rate, 0.05, 0.45) > 0.3 and loudness(samples, rate, 0.6, 1.9) < 0.001


def test_an_animated_image_has_no_sound_and_is_not_opened_for_it(tmp_path, caplog):
    from PIL import Image

    path = tmp_path / "still.webp"
    Image.new("RGB", (8, 8)).save(path, save_all=True, append_images=[Image.new("RGB", (8, 8))], duration=100)
    assert read_sound(str(path), 0.0, 0.2) is None and not caplog.records

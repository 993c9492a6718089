"""ALCM_SaveVideo and ALCM_LoadVideo in-process, on ComfyUI's own folders and VAE."""

import json
import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

import folder_paths

from animatelcm.nodes.video import LoadImageSequence, LoadVideo, SaveVideo
from animatelcm.video.writer import FORMATS
from animatelcm.devkit.comfy import node_as_executed


@pytest.fixture
def folders(tmp_path):
    """ComfyUI's input and output folders moved to a temporary directory for the test."""
    old = folder_paths.get_input_directory(), folder_paths.get_output_directory(), folder_paths.get_temp_directory()
    for name in ("input", "output", "temp"):
        (tmp_path / name).mkdir()
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    folder_paths.set_temp_directory(str(tmp_path / "temp"))
    yield tmp_path
    folder_paths.set_input_directory(old[0])
    folder_paths.set_output_directory(old[1])
    folder_paths.set_temp_directory(old[2])


def frames(count=6, height=40, width=56):
    torch.manual_seed(0)
    return torch.rand(count, height, width, 3)


def save(images, prompt=None, workflow=None, **options):
    settings = dict(frame_rate=8.0, format="mp4", loop_count=0, pingpong=False, crf=19, quality=90,
                    filename_prefix="clips/test")
    node = node_as_executed(SaveVideo, prompt, None if workflow is None else {"workflow": workflow})
    return node.execute(images, **{**settings, **options})


def saved_path(output, folders):
    [result] = output.ui["images"]
    return folders / result["type"] / result["subfolder"] / result["filename"]


def test_save_video_writes_h264_with_the_workflow_and_an_animated_preview(folders):
    output = save(frames(), prompt={"1": {"class_type": "ALCM_SaveVideo", "inputs": {}}}, workflow={"a": 1})
    ui = output.ui
    assert ui["animated"] == (True,) and ui["images"][0]["type"] == "output" and ui["images"][0]["subfolder"] == "clips"
    path = saved_path(output, folders)
    assert path.name == "test_00001_.mp4"
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert json.loads(container.metadata["workflow"]) == {"a": 1}
        assert json.loads(container.metadata["prompt"]) == {"1": {"class_type": "ALCM_SaveVideo", "inputs": {}}}
        assert sum(1 for _ in container.decode(video=0)) == 6


def test_save_video_never_overwrites(folders):
    user_file = folders / "output" / "clips" / "test_00002_.mp4"
    user_file.parent.mkdir()
    user_file.write_bytes(b"the user's own file")
    first, second = saved_path(save(frames()), folders), saved_path(save(frames()), folders)
    assert (first.name, second.name) == ("test_00003_.mp4", "test_00004_.mp4")
    assert user_file.read_bytes() == b"the user's own file"


def test_gif_gets_a_first_frame_png_with_the_workflow_and_never_takes_an_existing_png(folders):
    (folders / "output" / "clips").mkdir()
    taken = folders / "output" / "clips" / "test_00001_.png"  # e.g. from SaveImage with the same prefix
    taken.write_bytes(b"png of someone else")
    path = saved_path(save(frames(), workflow={"b": 2}, format="gif", pingpong=True), folders)
    assert path.name == "test_00002_.gif" and taken.read_bytes() == b"png of someone else"
    from PIL import Image

    with Image.open(path.with_suffix(".png")) as poster:
        assert json.loads(poster.text["workflow"]) == {"b": 2}
    with Image.open(path) as gif:
        assert gif.n_frames == 10  # 6 forward + 4 back


def test_a_failed_write_leaves_no_file_behind(folders):
    with pytest.raises(ValueError, match="frame rate must be positive"):
        save(frames(), frame_rate=0.0)
    assert not list((folders / "output").rglob("*.mp4"))


def test_latent_is_decoded_in_chunks_of_decode_chunk_frames(folders, sd15):
    _, _, vae = sd15
    latent = {"samples": torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
    batches = []
    original = vae.decode

    def recording_decode(samples, *args, **kwargs):
        batches.append(samples.shape[0])
        return original(samples, *args, **kwargs)

    vae.decode = recording_decode
    try:
        path = saved_path(save(latent, vae=vae, decode_chunk=2, format="webp", quality=100), folders)
    finally:
        del vae.decode
    assert batches == [2, 2, 1]
    expected = (vae.decode(latent["samples"]).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    from PIL import Image, ImageSequence

    with Image.open(path) as webp:
        written = np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(webp)])
    assert written.shape == (5, 64, 64, 3)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1  # chunked == decoded at once, lossless webp


def test_latent_without_vae_is_refused_with_the_fix(folders):
    with pytest.raises(ValueError, match="needs a VAE.*connect the checkpoint's VAE"):
        save({"samples": torch.zeros(4, 4, 8, 8)})


def test_load_video_reads_frames_count_rate_and_video_info(folders):
    save(frames(12, 48, 64), format="webp", quality=100, filename_prefix="source")
    written = next((folders / "output").glob("source_*.webp"))
    os.replace(written, folders / "input" / "clip.webp")
    assert LoadVideo.validate_inputs("clip.webp") is True
    images, count, rate, info, audio = LoadVideo.execute("clip.webp", frame_load_cap=4, skip_first_frames=1,
                                                  select_every_nth=2, force_rate=0.0, custom_width=32, custom_height=0,
                                                  multiple_of_8=True).result
    assert images.shape == (4, 24, 32, 3) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    assert count == 4 and rate == pytest.approx(4.0)
    assert info == pytest.approx({"source_fps": 8.0, "source_frame_count": 12, "source_duration": 1.5,
                                  "source_width": 64, "source_height": 48, "loaded_fps": 4.0, "loaded_frame_count": 4,
                                  "loaded_duration": 1.0, "loaded_width": 32, "loaded_height": 24})
    # A webp has no sound: silence as long as the frames returned (4 at 4 fps).
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 1, 44100)
    assert audio["waveform"].abs().max() == 0


def test_load_video_errors_name_the_file_and_the_fix(folders):
    assert "no file 'missing.mp4' in the input folder" in LoadVideo.validate_inputs("missing.mp4")
    (folders / "input" / "broken.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="ALCM_LoadVideo: broken.mp4: PyAV cannot open it.*Re-encode"):
        LoadVideo.execute("broken.mp4", 0, 0, 1, 0.0, 0, 0, True)


def test_load_video_fingerprint_changes_when_the_file_is_replaced(folders):
    path = folders / "input" / "clip.gif"
    path.write_bytes(b"one")
    before = LoadVideo.fingerprint_inputs("clip.gif")
    path.write_bytes(b"other content")
    assert LoadVideo.fingerprint_inputs("clip.gif") != before


def test_a_name_taken_after_core_chose_the_number_is_skipped(folders, monkeypatch):
    """Two prompts saving at once can be given the same number by core's counter: the second takes the next one."""
    (folders / "output" / "race_00001_.mp4").write_bytes(b"written a moment ago by another prompt")
    real = folder_paths.get_save_image_path
    monkeypatch.setattr(folder_paths, "get_save_image_path",
                        lambda *a, **k: (*real(*a, **k)[:2], 1, *real(*a, **k)[3:]))  # core's stale answer
    path = saved_path(save(frames(), filename_prefix="race"), folders)
    assert path.name == "race_00002_.mp4"
    assert (folders / "output" / "race_00001_.mp4").read_bytes() == b"written a moment ago by another prompt"


def test_latent_decoding_moves_the_progress_bar_and_stops_on_interrupt(folders, sd15, monkeypatch):
    import comfy.model_management
    import comfy.utils

    _, _, vae = sd15
    latent = {"samples": torch.zeros(5, 4, 8, 8)}
    updates = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: updates.append(
        (value, total)))
    save(latent, vae=vae, decode_chunk=2, format="gif")
    assert updates == [(2, 5), (4, 5), (5, 5)]

    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            save(latent, vae=vae, decode_chunk=2, format="gif", filename_prefix="interrupted")
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert not list((folders / "output").glob("interrupted*"))  # the reserved file is removed again


def test_load_video_gives_the_sound_of_the_frames_and_save_video_muxes_it(folders):
    """A clip with a tone from 1.0 s: loaded from frame 4 (0.5 s at 8 fps), its AUDIO starts 0.5 s before the tone
    and lasts as long as the frames; saved with those frames, the mp4's sound does the same."""
    from animatelcm.tests.unit.video.test_audio import loudness, pitch, tone_clip, decoded_sound

    tone_clip(folders / "input" / "tone.mp4")
    images, count, rate, _, audio = LoadVideo.execute("tone.mp4", frame_load_cap=12, skip_first_frames=4,
                                                      select_every_nth=1, force_rate=0.0, custom_width=0,
                                                      custom_height=0, multiple_of_8=True).result
    assert count == 12 and rate == 8.0
    waveform, sample_rate = audio["waveform"], audio["sample_rate"]
    assert waveform.shape == (1, 2, round(1.5 * sample_rate)) and waveform.dtype == torch.float32
    samples = waveform[0].numpy()
    assert loudness(samples, sample_rate, 0.0, 0.48) < 0.01 and pitch(samples, sample_rate, 0.55, 1.5) == \
        pytest.approx(440, abs=5)
    path = saved_path(save(images, audio=audio), folders)
    saved, saved_rate, codec = decoded_sound(path)
    assert codec == "aac" and saved.shape[1] / saved_rate == pytest.approx(1.5, abs=0.03)
    assert loudness(saved, saved_rate, 0.05, 0.45) < 0.01 and pitch(saved, saved_rate, 0.55, 1.45) == \
        pytest.approx(440, abs=5)


def test_a_gif_with_audio_says_the_sound_was_not_saved(folders):
    audio = {"waveform": torch.zeros(1, 1, 8000), "sample_rate": 8000}
    output = save(frames(), format="gif", audio=audio)
    assert "gif has no sound track" in output.ui["text"][0]
    assert "text" not in save(frames(), format="mp4", audio=audio).ui
    with pytest.raises(ValueError, match="audio: expected ComfyUI's AUDIO"):
        save(frames(), audio=torch.zeros(3))


# Mean absolute error (0-255 levels) of a loaded clip against the frames saved, per format, at crf 19 / quality 90:
# what each codec loses on smooth ramps and a moving pattern, with a margin. Lossless formats must come back exact.
ROUND_TRIP_TOLERANCE = {"mp4": 3.0, "webm": 3.0, "mp4 h265": 3.0, "mp4 h265 10-bit": 3.0, "mp4 av1": 3.0,
                        "mp4 av1 10-bit": 3.0, "mov prores 422 hq": 2.0, "mkv ffv1 lossless": 0.0,
                        "mov png lossless": 0.0, "gif": 4.0, "webp": 3.0}


def ramp_clip(count=10, height=48, width=64):
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([torch.stack([(x * 3 + 7 * i) % 256, (y * 4) % 256, torch.full_like(x, 20 * i)], -1)
                        for i in range(count)]).float() / 255


@pytest.mark.parametrize("file_format", FORMATS)
def test_every_format_round_trips_through_load_video(folders, file_format):
    images = ramp_clip()
    path = saved_path(save(images, format=file_format, filename_prefix="round_trip"), folders)
    os.replace(path, folders / "input" / path.name)
    loaded, count, rate, _, _ = LoadVideo.execute(path.name, frame_load_cap=0, skip_first_frames=0,
                                                  select_every_nth=1, force_rate=0.0, custom_width=0, custom_height=0,
                                                  multiple_of_8=True).result
    # GIF stores frame times in hundredths of a second: 125 ms becomes 120 or 130.
    assert count == 10 and rate == pytest.approx(8.0, rel=0.05 if file_format == "gif" else 0.001)
    error = float((loaded - images).abs().mean() * 255)
    assert error <= ROUND_TRIP_TOLERANCE[file_format], f"{file_format}: mean error {error:.2f} levels"


def test_save_output_off_writes_to_the_temp_folder_only(folders):
    output = save(frames(), save_output=False, filename_prefix="preview")
    [result] = output.ui["images"]
    assert result["type"] == "temp" and (folders / "temp" / result["filename"]).is_file()
    assert not any((folders / "output").rglob("*.mp4"))


def load_video(video, path="", **options):
    settings = dict(frame_load_cap=0, skip_first_frames=0, select_every_nth=1, force_rate=0.0, custom_width=0,
                    custom_height=0, multiple_of_8=False)
    return LoadVideo.execute(video, **{**settings, **options}, path=path).result


def test_a_typed_path_loads_from_the_folders_the_server_reads_and_nothing_else(folders, tmp_path_factory,
                                                                                 monkeypatch):
    clip = saved_path(save(frames(4), filename_prefix="made/clip"), folders)  # in the output folder
    assert LoadVideo.validate_inputs("anything.mp4", str(clip)) is True
    assert load_video("anything.mp4", str(clip))[1] == 4
    assert load_video("anything.mp4", f"../output/made/{clip.name}")[1] == 4  # relative to the input folder
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    outside = elsewhere / "private.mp4"
    clip.replace(outside)
    for typed in (str(outside), f"../../{elsewhere.name}/private.mp4"):
        message = LoadVideo.validate_inputs("anything.mp4", typed)
        assert "is outside the folders this server reads from" in message and "ALCM_VIDEO_FOLDERS" in message
        with pytest.raises(ValueError, match="outside the folders this server reads from"):
            load_video("anything.mp4", typed)
    (folders / "input" / "link.mp4").symlink_to(outside)  # a link out of the input folder is followed, then refused
    assert "leads outside" in LoadVideo.validate_inputs("link.mp4")
    monkeypatch.setenv("ALCM_VIDEO_FOLDERS", str(elsewhere))  # the server's owner allows that folder
    assert load_video("anything.mp4", str(outside))[1] == 4
    assert "no file at 'nothere.mp4'" in LoadVideo.validate_inputs("anything.mp4", "nothere.mp4")


def test_a_name_from_the_list_cannot_climb_out_of_the_input_folder(folders):
    save(frames(2), filename_prefix="secret")
    (folders / "outside.mp4").write_bytes((folders / "output" / "secret_00001_.mp4").read_bytes())
    for name in ("../outside.mp4", "../output/secret_00001_.mp4"):
        message = LoadVideo.validate_inputs(name)
        assert f"{name!r} leads outside the input folder" in message and "type its path in `path`" in message
    assert LoadVideo.validate_inputs("secret_00001_.mp4 [output]") is True  # core's annotation for the output folder


def sequence(folder, names, size=(40, 24)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", size, (20 * i, 0, 0)).save(folder / name)


def test_an_image_sequence_loads_in_natural_order_with_the_frame_choices(folders):
    names = [f"frame{i}.png" for i in range(12)]  # frame10 and frame11 sort after frame9
    sequence(folders / "input" / "shots" / "a", names)  # by name, frame10 would come before frame2
    images, count, rate, info = LoadImageSequence.execute("shots/a", 12.0, 0, 0, 1, 0.0, 0, 0, False).result
    assert count == 12 and rate == 12.0 and images.shape == (12, 24, 40, 3)
    assert [round(float(v) * 255 / 20) for v in images[:, 0, 0, 0]] == list(range(12))
    assert info["source_frame_count"] == 12 and info["source_duration"] == pytest.approx(1.0)
    images, count, rate, _ = LoadImageSequence.execute("shots/a", 12.0, 4, 2, 2, 0.0, 32, 0, True).result
    assert count == 4 and rate == 6.0 and images.shape == (4, 16, 32, 3)  # 40x24 to 32 wide: 19.2, to 16
    assert [round(float(v) * 255 / 20) for v in images[:, 0, 0, 0]] == [2, 4, 6, 8]


def test_image_sequence_errors_name_the_folder_or_frame_and_the_fix(folders, tmp_path_factory):
    assert "no folder at 'nope'" in LoadImageSequence.validate_inputs("nope")
    assert "outside the folders" in LoadImageSequence.validate_inputs(str(tmp_path_factory.mktemp("away")))
    (folders / "input" / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: the folder holds no images"):
        LoadImageSequence.execute("empty", 8.0, 0, 0, 1, 0.0, 0, 0, True)
    sequence(folders / "input" / "mixed", ["a1.png", "a2.png"])
    Image.new("RGB", (20, 20)).save(folders / "input" / "mixed" / "a3.png")
    with pytest.raises(ValueError, match="mixed/a3.png: 20x20, but the first frame \\(a1.png\\) is 40x24"):
        LoadImageSequence.execute("mixed", 8.0, 0, 0, 1, 0.0, 0, 0, True)


def test_load_video_as_latent_encodes_chunk_by_chunk_what_vae_encode_gives_at_once(folders, sd15):
    """10 frames read and encoded 4 at a time: the encoder sees batches of 4, 4, 2 and the latent equals core's
    VAEEncode of the frames ALCM_LoadVideo gives (SD's VAE encodes each frame on its own)."""
    import nodes as comfy_nodes

    _, _, vae = sd15
    from animatelcm.nodes.video import LoadVideoLatent
    from animatelcm.tests.unit.video.test_audio import tone_clip

    tone_clip(folders / "input" / "tone.mp4", frames=14)
    batches = []
    original = vae.encode

    def recording_encode(pixels, *args, **kwargs):
        batches.append(pixels.shape[0])
        return original(pixels, *args, **kwargs)

    choices = dict(frame_load_cap=10, skip_first_frames=4, select_every_nth=1, force_rate=0.0, custom_width=64,
                   custom_height=64, multiple_of_8=True)
    vae.encode = recording_encode
    try:
        latent, count, rate, info, audio = LoadVideoLatent.execute("tone.mp4", vae, **choices, encode_chunk=4).result
    finally:
        del vae.encode
    assert batches == [4, 4, 2] and count == 10 and rate == 8.0 and info["loaded_frame_count"] == 10
    images = LoadVideo.execute("tone.mp4", **choices).result[0]
    expected = comfy_nodes.VAEEncode().encode(vae, images)[0]["samples"]
    torch.testing.assert_close(latent["samples"], expected, rtol=0, atol=1e-4)
    assert audio["waveform"].shape[-1] == round(10 / 8 * audio["sample_rate"])  # the frames' 1.25 s, from 0.5 s
    assert "leads outside the input folder" in LoadVideoLatent.validate_inputs("../x.mp4")
    assert LoadVideoLatent.validate_inputs("../x.mp4").startswith("ALCM_LoadVideoLatent:")

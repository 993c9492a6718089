"""ALCM_LoadVideo and ALCM_SaveVideo through the real server: upload, every format, the workflow inside, bad files."""

import json

import av
import numpy as np
import pytest
import requests
from PIL import Image, ImageSequence

from animatelcm.devkit.server import PromptError

from .conftest import SIZE

# Frame i of the uploaded GIF is one solid colour, so order survives every format and can be read back.
COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230), (230, 20, 230)]


@pytest.fixture(scope="module")
def uploaded_gif(server, tmp_path_factory):
    """A 6-frame, 10 fps, 40x24 GIF uploaded through /upload/image, as the frontend's upload button does."""
    path = tmp_path_factory.mktemp("upload") / "colours.gif"
    frames = [Image.new("RGB", (40, 24), colour) for colour in COLOURS]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with open(path, "rb") as file:
        response = requests.post(f"{server.url}/upload/image", files={"image": ("colours.gif", file, "image/gif")},
                                 data={"overwrite": "false"}, timeout=30)
    response.raise_for_status()
    return response.json()["name"]


def colour_order(frames):
    return [int(np.argmin([np.abs(f[4, 4].astype(int) - c).sum() for c in COLOURS])) for f in frames]


def without_fingerprints(prompt: dict) -> dict:
    """The prompt as queued: the server adds each node's `is_changed` fingerprint to the copy nodes receive."""
    return {node_id: {k: v for k, v in node.items() if k != "is_changed"} for node_id, node in prompt.items()}


def saved_file(server, history, node_id):
    [saved] = history["outputs"][node_id]["images"]
    return server.output_dir / saved["subfolder"] / saved["filename"]


def test_uploaded_gif_round_trips_through_every_format(server, uploaded_gif):
    formats = ["mp4", "webm", "gif", "webp"]
    prompt = {"load": {"class_type": "ALCM_LoadVideo",
                       "inputs": {"video": uploaded_gif, "frame_load_cap": 0, "skip_first_frames": 0,
                                  "select_every_nth": 1, "force_rate": 0.0, "custom_width": 0, "custom_height": 0,
                                  "multiple_of_8": False}}}
    for fmt in formats:
        prompt[fmt] = {"class_type": "ALCM_SaveVideo",
                       "inputs": {"images": ["load", 0], "frame_rate": ["load", 2], "format": fmt, "loop_count": 3,
                                  "pingpong": fmt in ("gif", "webp"), "crf": 10, "quality": 100,
                                  "filename_prefix": f"e2e/round_trip/{fmt}"}}
    history = server.run(prompt)
    forward = [0, 1, 2, 3, 4, 5]
    for fmt in ("mp4", "webm"):
        path = saved_file(server, history, fmt)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == {"mp4": "h264", "webm": "vp9"}[fmt]
            assert stream.average_rate == 10
            assert (stream.codec_context.width, stream.codec_context.height) == (40, 24)
            tags = {key.lower(): value for key, value in container.metadata.items()}  # Matroska upper-cases them
            assert without_fingerprints(json.loads(tags["prompt"])) == prompt
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert colour_order(frames) == forward
    for fmt, plays_field in (("gif", 2), ("webp", 3)):  # GIF stores repeats after the first play, WebP the plays
        path = saved_file(server, history, fmt)
        with Image.open(path) as image:
            frames = []
            for frame in ImageSequence.Iterator(image):
                frames.append(np.asarray(frame.convert("RGB")))
            assert image.info["loop"] == plays_field
        assert colour_order(frames) == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]
        with Image.open(path.with_suffix(".png")) as poster:  # the first frame, carrying the prompt
            assert without_fingerprints(json.loads(poster.text["prompt"])) == prompt


def test_an_odd_sized_video_is_padded_for_h264(server, uploaded_gif):
    prompt = {"load": {"class_type": "ALCM_LoadVideo",
                       "inputs": {"video": uploaded_gif, "frame_load_cap": 2, "skip_first_frames": 0,
                                  "select_every_nth": 1, "force_rate": 0.0, "custom_width": 0, "custom_height": 0,
                                  "multiple_of_8": False}},
              "crop": {"class_type": "ImageCrop", "inputs": {"image": ["load", 0], "width": 33, "height": 17,
                                                              "x": 0, "y": 0}},
              "save": {"class_type": "ALCM_SaveVideo",
                       "inputs": {"images": ["crop", 0], "frame_rate": 8.0, "format": "mp4", "loop_count": 0,
                                  "pingpong": False, "crf": 19, "quality": 90, "filename_prefix": "e2e/odd"}}}
    with av.open(str(saved_file(server, server.run(prompt), "save"))) as container:
        context = container.streams.video[0].codec_context
        assert (context.width, context.height, context.pix_fmt) == (34, 18, "yuv420p")


def load_prompt(name):
    return {"load": {"class_type": "ALCM_LoadVideo",
                     "inputs": {"video": name, "frame_load_cap": 0, "skip_first_frames": 0, "select_every_nth": 1,
                                "force_rate": 0.0, "custom_width": 0, "custom_height": 0, "multiple_of_8": True}},
            "save": {"class_type": "ALCM_SaveVideo",
                     "inputs": {"images": ["load", 0], "frame_rate": 8.0, "format": "gif", "loop_count": 0,
                                "pingpong": False, "crf": 19, "quality": 90, "filename_prefix": "e2e/bad"}}}


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(server):
    with pytest.raises(PromptError, match="no file 'nowhere.mp4' in the input folder"):
        server.run(load_prompt("nowhere.mp4"))  # refused at validation, before anything runs
    (server.base_dir / "input" / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    with pytest.raises(PromptError, match="broken.mp4: PyAV cannot open it as a video"):
        server.run(load_prompt("broken.mp4"))
    latent_without_vae = {"latent": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE,
                                                                                  "batch_size": 2}},
                          "save": {**load_prompt("x")["save"]}}
    latent_without_vae["save"]["inputs"] = {**latent_without_vae["save"]["inputs"], "images": ["latent", 0]}
    with pytest.raises(PromptError, match="needs a VAE"):
        server.run(latent_without_vae)
    assert server.get("/system_stats")["system"]["comfyui_version"]
    assert not list((server.output_dir / "e2e").glob("bad_*"))


def test_the_sound_of_a_loaded_clip_goes_into_the_saved_video_and_core_audio_nodes(server, tmp_path):
    """A clip with a tone from 1.0 s (24 frames at 8 fps), uploaded, loaded from frame 4: the mp4 and webm saved with
    the loader's AUDIO have the tone 0.5 s in and last the 12 frames' 1.5 s; core's SaveAudio takes the same AUDIO."""
    from animatelcm.tests.unit.video.test_audio import decoded_sound, loudness, pitch, tone_clip

    path = tone_clip(tmp_path / "tone.mp4")
    with open(path, "rb") as file:
        response = requests.post(f"{server.url}/upload/image", files={"image": ("tone.mp4", file, "video/mp4")},
                                 data={"overwrite": "true"}, timeout=30)
    response.raise_for_status()
    prompt = {"load": {"class_type": "ALCM_LoadVideo",
                       "inputs": {"video": response.json()["name"], "frame_load_cap": 12, "skip_first_frames": 4,
                                  "select_every_nth": 1, "force_rate": 0.0, "custom_width": 0, "custom_height": 0,
                                  "multiple_of_8": True}},
              "flac": {"class_type": "SaveAudio", "inputs": {"audio": ["load", 4], "filename_prefix": "e2e/sound"}}}
    for fmt in ("mp4", "webm"):
        prompt[fmt] = {"class_type": "ALCM_SaveVideo",
                       "inputs": {"images": ["load", 0], "frame_rate": ["load", 2], "format": fmt, "loop_count": 0,
                                  "pingpong": False, "crf": 19, "quality": 90, "filename_prefix": f"e2e/sound/{fmt}",
                                  "audio": ["load", 4]}}
    history = server.run(prompt)
    for fmt in ("mp4", "webm"):
        samples, rate, codec = decoded_sound(saved_file(server, history, fmt))
        assert codec == {"mp4": "aac", "webm": "opus"}[fmt]
        assert samples.shape[1] / rate == pytest.approx(1.5, abs=0.03)
        assert loudness(samples, rate, 0.05, 0.45) < 0.01 and pitch(samples, rate, 0.55, 1.45) == pytest.approx(440,
                                                                                                              abs=5)
    [flac] = history["outputs"]["flac"]["audio"]
    samples, rate, codec = decoded_sound(server.output_dir / flac["subfolder"] / flac["filename"])
    assert codec == "flac" and samples.shape[1] == round(1.5 * rate)

"""Every shipped workflow is valid for the real server, matches its API twin, and the API twin runs end to end."""

import io
import json
import struct

import av
import numpy as np
import pytest
from PIL import Image

from animatelcm.devkit.server import PromptError
from animatelcm.devkit.workflows import WORKFLOWS as WORKFLOWS_DIR
from animatelcm.devkit.workflows import (api_twin, at_test_size, frames_at_test_size, is_widget, strip_meta,
                                         ui_to_api, ui_workflows)
from animatelcm.samplers.schedule import COMMUNITY

from animatelcm.devkit.videos import TONE_HZ

from .conftest import I2V_SIZE, INPUT_TONE_FROM, SIZE

WORKFLOWS = ui_workflows()
# Run by tests of their own below, which also check the settings they ship with.
OWN_TEST = {"animatelcm_svd_xt", "animatelcm_text_to_video", "animatelcm_image_to_video", "animatelcm_finishing"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_is_valid_and_converts_to_its_api_twin(server, path):
    info = server.get("/object_info")
    ui = json.loads(path.read_text())
    assert ui["version"] == 0.4 and any(node["type"] == "Note" for node in ui["nodes"])
    api = ui_to_api(ui, info)
    assert api == strip_meta(api_twin(path))
    for node in api.values():
        declared = {**info[node["class_type"]]["input"]["required"],
                    **info[node["class_type"]]["input"].get("optional", {})}
        for name, value in node["inputs"].items():
            spec = declared[name]
            if not is_widget(spec) or isinstance(value, list):
                continue
            options = spec[0] if isinstance(spec[0], list) else spec[1].get("options")
            if options is not None:
                assert value in options, f"{node['class_type']}.{name} = {value!r} is not one of {options}"
            elif spec[0] in ("INT", "FLOAT"):
                assert spec[1].get("min", -np.inf) <= value <= spec[1].get("max", np.inf)


def small(prompt: dict) -> dict:
    return at_test_size(prompt, SIZE, I2V_SIZE)


def test_the_community_schedule_workflow_ships_its_schedule_steps_and_cfg():
    prompt = strip_meta(api_twin(WORKFLOWS_DIR / "animatelcm_community_schedule.json"))
    assert prompt["4"]["inputs"]["beta_schedule"] == COMMUNITY
    assert prompt["8"]["inputs"]["steps"] == 8 and prompt["8"]["inputs"]["cfg"] == 1.5


def read_back(path):
    """(frame count, frames per second, codec) of a saved video, read by PyAV or Pillow."""
    if path.suffix in (".mp4", ".webm"):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for _ in container.decode(video=0)), float(stream.average_rate), stream.codec_context.name
    with Image.open(path) as image:
        return image.n_frames, 1000 / image.info["duration"], path.suffix[1:]


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.stem not in OWN_TEST], ids=lambda p: p.stem)
def test_api_twin_runs_end_to_end_and_saves_what_its_save_node_says(server, path):
    runs_and_saves_what_its_save_node_says(server, small(strip_meta(api_twin(path))))


def test_finishing_workflow_saves_the_upscaled_second_pass_with_the_source_clips_sound(server):
    """Two passes (the second on the latent upscaled x1.5, denoise 0.5, in context windows), colour matched, saved as
    mp4 with the loaded clip's sound: 12 frames at 8 fps, so 1.5 s of it, the tone starting 0.5 s in as in the
    source."""
    from animatelcm.tests.unit.video.test_audio import decoded_sound, loudness, pitch

    shipped = strip_meta(api_twin(WORKFLOWS_DIR / "animatelcm_finishing.json"))
    assert shipped["16"]["inputs"]["scale_by"] == 1.5 and shipped["17"]["inputs"]["denoise"] == 0.5
    assert shipped["11"]["inputs"]["audio"] == ["14", 4] and shipped["11"]["inputs"]["format"] == "mp4"
    history = runs_and_saves_what_its_save_node_says(server, small(shipped))
    [saved] = history["outputs"]["11"]["images"]
    file = server.output_dir / saved["subfolder"] / saved["filename"]
    with av.open(str(file)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (SIZE * 3 // 2, SIZE * 3 // 2)
    samples, rate, codec = decoded_sound(file)
    assert codec == "aac" and samples.shape[1] / rate == pytest.approx(1.5, abs=0.03)
    assert loudness(samples, rate, 0.05, INPUT_TONE_FROM - 0.05) < 0.01
    assert pitch(samples, rate, INPUT_TONE_FROM + 0.05, 1.45) == pytest.approx(TONE_HZ, abs=5)
    progress = {e["data"]["node"] for e in server.events if e["type"] == "progress"}
    assert {"8", "17"} <= progress  # both passes sampled


def test_svd_xt_api_twin_runs_end_to_end_with_its_shipped_steps(server):
    prompt = small(strip_meta(api_twin(WORKFLOWS_DIR / "animatelcm_svd_xt.json")))
    runs_and_saves_what_its_save_node_says(server, prompt)
    assert prompt["6"]["inputs"]["steps"] == 4 and prompt["7"]["class_type"] == "ALCM_Sampler"
    progress = [e["data"]["value"] for e in server.events if e["type"] == "progress" and e["data"]["node"] == "8"]
    assert progress == [1, 2, 3, 4]


def runs_and_saves_what_its_save_node_says(server, prompt: dict) -> dict:
    """Runs a workflow's API twin (made `small`); each ALCM_SaveVideo output has the frames, codec and rate asked."""
    history = server.run(prompt)
    saves = {node_id: node["inputs"] for node_id, node in prompt.items() if node["class_type"] == "ALCM_SaveVideo"}
    assert saves, "every shipped workflow saves its result with ALCM_SaveVideo"
    for node_id, inputs in saves.items():
        [saved] = history["outputs"][node_id]["images"]
        assert history["outputs"][node_id]["animated"] == [True]
        file = server.output_dir / saved["subfolder"] / saved["filename"]
        count, rate, codec = read_back(file)
        assert file.suffix == "." + inputs["format"]
        assert codec == {"mp4": "h264", "webm": "vp9"}.get(inputs["format"], inputs["format"])
        frames = frames_at_test_size(prompt)
        assert count == (2 * frames - 2 if inputs["pingpong"] else frames)
        expected_rate = 8.0 if isinstance(inputs["frame_rate"], list) else inputs["frame_rate"]  # linked: 8 fps video
        assert rate == pytest.approx(expected_rate, rel=0.05)
    return history


def animated_previews(server) -> list[int]:
    """Frame counts of the animated PNG previews the last run sent (core's own frame-0 previews are JPEG)."""
    counts = []
    for message in server.previews:
        event, image_type = struct.unpack(">II", message[:8])
        if event == 1 and image_type == 2:
            with Image.open(io.BytesIO(message[8:])) as image:
                counts.append(image.n_frames)
    return counts


def test_text_to_video_api_workflow_runs_with_its_shipped_settings_and_repeats_exactly(server):
    shipped = strip_meta(api_twin(WORKFLOWS_DIR / "animatelcm_text_to_video.json"))
    assert shipped["7"]["inputs"]["batch_size"] == 16 and shipped["8"]["inputs"]["steps"] == 4
    prompt = small(shipped)
    # H.264 is lossy (and x264's threads do not encode identically twice): compare the decoded frames losslessly.
    prompt["frames"] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "e2e/t2v"}}
    runs = []
    for run in range(2):
        history = runs_and_saves_what_its_save_node_says(server, prompt)
        cached = {node for e in server.events if e["type"] == "execution_cached" for node in e["data"]["nodes"]}
        assert "8" not in cached, "the sampler came from the cache: the repeat proves nothing"
        progress = [e["data"]["value"] for e in server.events if e["type"] == "progress" and e["data"]["node"] == "8"]
        assert progress == [1, 2, 3, 4] and animated_previews(server) == [8, 8, 8, 8]  # the whole clip, each step
        runs.append([np.array(Image.open(server.output_dir / i["subfolder"] / i["filename"]))
                     for i in history["outputs"]["frames"]["images"]])
        server.free()
    first, second = runs
    assert len(first) == frames_at_test_size(prompt) and first[0].shape == (SIZE, SIZE, 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], first[-1])


def test_image_to_video_api_workflow_runs_with_its_shipped_settings(server):
    shipped = strip_meta(api_twin(WORKFLOWS_DIR / "animatelcm_image_to_video.json"))
    assert shipped["8"]["inputs"]["frames"] == 16 and shipped["9"]["inputs"]["steps"] == 4
    assert shipped["9"]["inputs"]["cfg"] == 1.0
    runs_and_saves_what_its_save_node_says(server, small(shipped))
    progress = [e["data"]["value"] for e in server.events if e["type"] == "progress" and e["data"]["node"] == "9"]
    assert progress == [1, 2, 3, 4]


def test_a_long_sampling_run_can_be_interrupted(server):
    prompt = strip_meta(api_twin(WORKFLOWS_DIR / "animatelcm_text_to_video.json"))
    prompt["7"]["inputs"].update(width=SIZE, height=SIZE)
    prompt["8"]["inputs"].update(steps=50, seed=99)

    def interrupt_at_first_step(event):
        if event["type"] == "progress" and event["data"]["value"] == 1:
            server.interrupt()

    with pytest.raises(PromptError):
        server.run(prompt, on_event=interrupt_at_first_step)
    assert server.events[-1]["type"] == "execution_interrupted" and server.events[-1]["data"]["node_id"] == "8"
    assert max(e["data"]["value"] for e in server.events if e["type"] == "progress") < 50

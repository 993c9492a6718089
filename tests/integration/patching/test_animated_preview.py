"""Animated previews: each sampling step of a clip sends every frame, decoded by core's previewer, as one animated
PNG to the prompt's client, after core's own frame-0 preview; nothing when previews are off or for one frame."""

import io
import struct
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import latent_preview
from comfy.cli_args import LatentPreviewMethod, args

from animatelcm.devkit import motion_modules as mm
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.nodes.sampling import KSampler
from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file


@pytest.fixture(scope="module")
def animated():
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    return attach_motion_model(tiny_sd15_model(), load_motion_model_file(str(path), path.name), 1.0, "auto")


@pytest.fixture
def client(monkeypatch):
    """What a running server would send to the prompt's client (ComfyUI's `server` module, looked up by name)."""
    sent = []
    instance = SimpleNamespace(client_id="client-1", send_sync=lambda event, data, sid: sent.append((event, data, sid)))
    monkeypatch.setitem(sys.modules, "server", SimpleNamespace(PromptServer=SimpleNamespace(instance=instance)))
    return sent


def sample(model, frames, steps=2):
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    cond = [[torch.randn(1, 77, 768, generator=torch.manual_seed(0)), {}]]
    return KSampler.execute(model, cond, cond, latent, 3, steps, 1.0, 1.0).args[0]["samples"]


def frames_of(message):
    event, data, sid = message
    assert event == 1 and sid == "client-1" and struct.unpack(">I", data[:4]) == (2,)  # a PNG preview image
    with Image.open(io.BytesIO(data[4:])) as image:
        frames = []
        for i in range(image.n_frames):
            image.seek(i)
            frames.append(np.array(image.convert("RGB")))
        return frames


def test_every_step_sends_every_frame_as_cores_previewer_draws_it(animated, client, monkeypatch):
    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.Latent2RGB)
    out = sample(animated, 6)
    assert len(client) == 2  # one per step
    last = frames_of(client[-1])
    previewer = latent_preview.get_previewer(torch.device("cpu"), animated.model.latent_format)
    x0 = animated.model.process_latent_in(out)  # the last step's estimate is the result, in the model's units
    expected = [np.array(previewer.decode_latent_to_preview(x0[i:i + 1])) for i in range(6)]
    assert len(last) == 6 and all(np.array_equal(a, b) for a, b in zip(last, expected))
    assert not np.array_equal(last[0], last[5])  # the frames differ: the whole clip is shown, not frame 0 six times


def test_nothing_is_sent_with_previews_off_or_for_a_single_frame(animated, client, monkeypatch):
    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.NoPreviews)
    sample(animated, 6)
    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.Latent2RGB)
    sample(animated, 1)
    assert client == []

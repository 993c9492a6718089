"""Animated previews while a clip samples: every frame of the sampler's current estimate, not only frame 0.

Core's sampler callback previews `x0[0]` (latent_preview.py). The motion model's OUTER_SAMPLE wrapper wraps that
callback: after core's own preview, each step's estimate is decoded frame by frame with the previewer core chose
(`latent_preview.get_previewer`, looked up when sampling starts, so the user's --preview-method and packs that
replace the previewer are honoured: latent2rgb or TAESD) and sent to the prompt's client as one animated PNG. The
frontend shows a preview message as an image on the running node, and the browser plays an animated PNG there by
itself. Nothing is sent when previews are off or no client is listening (a script, a test without a server).
"""

from __future__ import annotations

import io
import struct
import sys

import torch
from PIL import Image

import latent_preview

PNG = 2  # the image type in a preview message: 1 JPEG, 2 PNG
PREVIEW_IMAGE = 1  # protocol.BinaryEventTypes.PREVIEW_IMAGE
FRAME_RATE = 8.0  # frames per second of the preview animation (AnimateLCM's usual output rate)


def animated_png(frames: list[Image.Image], frame_rate: float = FRAME_RATE) -> bytes:
    """An animated PNG that loops forever; compress_level 1 as core's previews, so encoding stays cheap."""
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=1000 / frame_rate, loop=0,
                   compress_level=1)
    return buffer.getvalue()


def preview_frames(previewer, x0: torch.Tensor) -> list[Image.Image]:
    """Each frame of x0 [frames, C, H, W] as the previewer shows frame 0."""
    return [previewer.decode_latent_to_preview(x0[i:i + 1]) for i in range(x0.shape[0])]


def _client_sender():
    """A function sending to the client of the running prompt, as core sends its previews, or None when no client
    listens; ComfyUI's `server` module is loaded only in a running server (it is looked up, not imported)."""
    server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if server is None or server.client_id is None:
        return None
    client = server.client_id
    return lambda message: server.send_sync(PREVIEW_IMAGE, message, client)


def animated_callback(callback, previewer, send):
    """`callback` (core's, or None) followed by the clip's animated preview."""

    def step(i, x0, x, total_steps):
        if callback is not None:
            callback(i, x0, x, total_steps)
        send(struct.pack(">I", PNG) + animated_png(preview_frames(previewer, x0)))

    return step


def with_animated_preview(executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                          disable_pbar=False, seed=None, **kwargs):
    """OUTER_SAMPLE wrapper; a clip of one frame keeps core's preview alone, and nothing is decoded when no client
    listens."""
    patcher = executor.class_obj.model_patcher
    send = _client_sender() if callback is not None and noise.shape[0] > 1 else None
    if send is not None:
        previewer = latent_preview.get_previewer(patcher.load_device, patcher.model.latent_format)
        if previewer is not None:
            callback = animated_callback(callback, previewer, send)
    return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs)

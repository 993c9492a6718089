"""The base image model a training run starts from: its UNet, its text encoder and its pixel <-> model-space maps.

- `sd15`: an SD1.5 checkpoint read by ComfyUI's own loader (UNet, CLIP, VAE; latents scaled by 0.18215);
- `tiny`: the reduced-width model of the small-scale proof, with a word-embedding text encoder; a new one when
  `base` is None (stage `teacher_image` trains it), else read from the `base.safetensors` that stage wrote. Its model
  space is the pixels in [0, 1] (black is zero, so a clip on black has nearly zero mean, like SD's latents: pure
  noise then looks like the noisiest training inputs, and the background is not left to the noise's mean) folded
  `patch` x `patch` into channels (space-to-depth: a lossless "VAE" with SD's structure, fewer positions, more
  channels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from .models import TINY_UNET, WordEncoder, new_unet
from .shapes import VOCABULARY

BACKBONES = ("tiny", "sd15")
TINY_TEXT_DIM = TINY_UNET["context_dim"]


@dataclass
class Backbone:
    unet: nn.Module
    unet_config: dict
    encode_text: Callable[[list[str]], torch.Tensor]
    encode_video: Callable[[torch.Tensor], torch.Tensor]  # pixels [B, F, 3, H, W] in [-1, 1] -> model space
    decode_video: Callable[[torch.Tensor], torch.Tensor]  # and back
    channels: int  # of the model space
    downscale: int  # pixels per model-space pixel
    text_encoder: nn.Module | None = None  # trainable (tiny only)

    def trainable_modules(self) -> list[nn.Module]:
        return [m for m in (self.unet, self.text_encoder) if m is not None]


def load_backbone(kind: str, base: str | None, device: torch.device, image_size: int = 32,
                  patch: int = 1) -> Backbone:
    if kind == "tiny":
        return _tiny(base, device, image_size, patch)
    if kind == "sd15":
        if base is None:
            raise ValueError("the sd15 backbone needs `base`: the path of an SD1.5 checkpoint (.safetensors)")
        return _sd15(base, device)
    raise ValueError(f"backbone must be one of {BACKBONES}, got {kind!r}")


def save_tiny_backbone(backbone: Backbone, path: Path) -> None:
    weights = {f"unet.{k}": v for k, v in backbone.unet.state_dict().items()}
    weights |= {f"text.{k}": v for k, v in backbone.text_encoder.state_dict().items()}
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(path))


def _tiny(base: str | None, device: torch.device, image_size: int, patch: int) -> Backbone:
    weights = load_file(base, device=str(device)) if base is not None else None
    if weights is not None:
        stored = weights["unet.input_blocks.0.0.weight"].shape[1]
        if stored != 3 * patch * patch:
            raise ValueError(f"{Path(base).name} was trained with model.patch = {round((stored / 3) ** 0.5)}, "
                             f"this run sets {patch}: set the same model.patch as its teacher_image stage")
    if image_size % patch:
        raise ValueError(f"data.size ({image_size}) must be a multiple of model.patch ({patch})")
    channels = 3 * patch * patch
    config = dict(TINY_UNET, image_size=image_size // patch, in_channels=channels, out_channels=channels)
    unet = new_unet(config, device)
    text = WordEncoder(VOCABULARY, TINY_TEXT_DIM).to(device)
    if weights is not None:
        unet.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("unet.")})
        text.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("text.")})

    def encode_video(video: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle((video.flatten(0, 1) + 1) / 2, patch).unflatten(0, video.shape[:2])

    def decode_video(latent: torch.Tensor) -> torch.Tensor:
        return (F.pixel_shuffle(latent.flatten(0, 1), patch) * 2 - 1).unflatten(0, latent.shape[:2])

    return Backbone(unet, config, text, encode_video, decode_video, channels, patch, text_encoder=text)


def _sd15(path: str, device: torch.device) -> Backbone:
    import comfy.supported_models

    from ..patching.compat import load_checkpoint_static

    model, clip, vae = load_checkpoint_static(path)
    if not isinstance(model.model.model_config, comfy.supported_models.SD15):
        raise ValueError(f"{Path(path).name} is not an SD1.5 checkpoint (ComfyUI detects "
                         f"{type(model.model.model_config).__name__}): AnimateLCM distils SD1.5 models")
    unet = model.model.diffusion_model.to(device=device, dtype=torch.float32).requires_grad_(False)
    latent_format = model.model.latent_format

    @torch.no_grad()
    def encode_text(captions: list[str]) -> torch.Tensor:
        return torch.cat([clip.encode_from_tokens(clip.tokenize(c)) for c in captions]).to(device, torch.float32)

    @torch.no_grad()
    def encode_video(video: torch.Tensor) -> torch.Tensor:
        b, f = video.shape[:2]
        pixels = ((video.flatten(0, 1).movedim(1, -1) + 1) / 2).clamp(0, 1)  # ComfyUI IMAGE: [N, H, W, 3] in [0, 1]
        return latent_format.process_in(vae.encode(pixels)).to(device, torch.float32).unflatten(0, (b, f))

    @torch.no_grad()
    def decode_video(latent: torch.Tensor) -> torch.Tensor:
        b, f = latent.shape[:2]
        images = vae.decode(latent_format.process_out(latent.flatten(0, 1)))
        return (images.movedim(-1, 1) * 2 - 1).to(device).unflatten(0, (b, f))

    return Backbone(unet, dict(model.model.model_config.unet_config), encode_text, encode_video, decode_video, 4, 8)

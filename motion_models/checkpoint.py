"""Motion-model checkpoints: normalise a state dict, tell its format from its keys, reject what is not one, load it.

Functions take a state dict and the file's name (for error messages) rather than a path, so ComfyUI glue can read
files with `comfy.utils.load_torch_file`; `read_state_dict` does the same without ComfyUI for tests and tools.
Formats, from the keys alone (docs/reference.md, sections 2 and 4):

- `animatelcm_t2v`: no `pos_encoder.pe` keys (the encoding is computed in code, 64 frames).
- `animatelcm_i2v`: the same plus the image encoder adapter (`img_encoder.*`).
- `animatediff_v1`: stored encoding of 24 frames, no mid-block module.
- `animatediff_v2_v3`: stored encoding of 32 frames. v2 and v3 have the same keys and shapes, so they cannot be
  told apart and are reported together.
- `animatediff`: another stored length (a fine-tune), loaded as is.
"""

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from .motion_module import (COMPUTED_PE_LENGTH, FULL_WIDTH, GROUPS, AttentionFn, MotionModel, Operations,
                            attention_sdpa)

IMAGE_ENCODER_PREFIX = "img_encoder."
WRAPPER_PREFIXES = ("module.",)  # added by torch.nn.DataParallel / DistributedDataParallel when saving
KINDS_BY_PE_LENGTH = {None: "animatelcm_t2v", 24: "animatediff_v1", 32: "animatediff_v2_v3"}

LORA_KEY = re.compile(r"lora_down|lora_up|lora_unet_|[._]lora[._]")
BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # what torch's weights-only reader names when it refuses a pickle
_DOWN_LEVEL_KEY = re.compile(r"down_blocks\.(\d+)\.motion_modules\.")
SHOWN = 3  # keys quoted in an error message
# A SparseCtrl file holds motion modules too, beside its ControlNet's condition embedding and zero convs.
SPARSECTRL_KEYS = ("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block.")


class MotionModelFormatError(ValueError):
    """The file is not an SD1.5 motion module this pack can load; the message says what was expected and found."""


@dataclass(frozen=True)
class MotionModelFormat:
    """What a checkpoint holds. `pe_length` is the stored encoding length (None when computed in code);
    `max_frames` is the longest clip one pass can take, the encoding length in effect."""

    kind: str
    width: tuple[int, ...]
    pe_length: int | None
    has_mid_block: bool
    has_image_encoder: bool
    max_frames: int
    image_channels: int = 4  # the image encoder's latent channels (SD1.5's VAE: 4)


@dataclass(frozen=True)
class LoadedMotionModel:
    """A loaded motion model and its format. An I2V file's adapter is part of the model: `model.image_encoder`."""

    model: MotionModel
    format: MotionModelFormat


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file, or a pickled checkpoint with `torch.load(weights_only=True)` (never runs code)."""
    path = Path(path)
    try:
        if path.suffix in (".safetensors", ".sft"):
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:  # missing file, no permission: the message already names the path
        raise
    except Exception as error:  # damaged bytes fail in many ways (EOFError, KeyError, RuntimeError, SafetensorError)
        raise unreadable_file_error(path.name, error) from error


def unreadable_file_message(name: str, error: Exception) -> str:
    """Why a model file could not be read at all, whichever reader failed. A pickle that asks for Python objects
    besides tensors (code, when an ordinary load runs it) is told apart from damaged bytes: torch's weights-only
    reader refuses it without running it, and the user should know the file may be unsafe, not merely broken."""
    message = str(error)
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in message:
        asked = BLOCKED_GLOBAL.search(message)
        detail = f" (it asks for {asked.group(1)})" if asked else ""
        return (f"{name}: the file holds pickled Python objects besides tensors{detail}; they would run as code in an "
                f"ordinary load and may be unsafe. They were not run and the file was not loaded: use the model's "
                f".safetensors release, or a copy from a source you trust")
    return (f"{name}: cannot read the file: it is corrupt, incomplete (download it again) or not a weights file: "
            f"{type(error).__name__}: {error}")


def unreadable_file_error(name: str, error: Exception) -> MotionModelFormatError:
    return MotionModelFormatError(unreadable_file_message(name, error))


def normalize_state_dict(state_dict: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Unwrap a nested `state_dict`, drop non-tensor entries (training step counters) and strip `module.` prefixes."""
    nested = state_dict.get("state_dict")
    if isinstance(nested, Mapping):
        state_dict = nested
    normalized = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        normalized[key] = value
    return normalized


def detect_format(state_dict: Mapping[str, object], name: str) -> MotionModelFormat:
    """Tell the format from the keys and check every key and shape against the model it describes.

    `name` (the file name) starts every error message. Raises MotionModelFormatError for anything else: an empty
    file, a LoRA, a full checkpoint, an SDXL or HotshotXL motion module, missing, unexpected or mis-shaped keys.
    """
    state_dict = normalize_state_dict(state_dict)
    _reject_other_files(state_dict, name)
    width = _width(state_dict, name)
    pe_lengths = {v.shape[1] for k, v in state_dict.items() if k.endswith("pos_encoder.pe") and v.ndim == 3}
    if len(pe_lengths) > 1:
        raise MotionModelFormatError(f"{name}: expected one position-encoding length in all modules, found "
                                     f"{sorted(pe_lengths)}")
    pe_length = next(iter(pe_lengths), None)
    has_image_encoder = any(k.startswith(IMAGE_ENCODER_PREFIX) for k in state_dict)
    kind = "animatelcm_i2v" if has_image_encoder else KINDS_BY_PE_LENGTH.get(pe_length, "animatediff")
    fmt = MotionModelFormat(kind=kind, width=width, pe_length=pe_length,
                            has_mid_block=any(k.startswith("mid_block.motion_modules.") for k in state_dict),
                            has_image_encoder=has_image_encoder, max_frames=pe_length or COMPUTED_PE_LENGTH,
                            image_channels=_image_channels(state_dict))
    _check_layout(state_dict, fmt, name)
    return fmt


def load_motion_model(state_dict: Mapping[str, object], name: str, operations: Operations = torch.nn,
                      dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                      attention: AttentionFn = attention_sdpa) -> LoadedMotionModel:
    """Detect the format, build the MotionModel with `operations`/`dtype`/`device`/`attention` and load the
    weights strictly, the I2V image encoder's included (fp16 or fp32 files alike; they are cast to `dtype`, torch's
    default when None)."""
    state_dict = normalize_state_dict(state_dict)
    fmt = detect_format(state_dict, name)
    model = _build(fmt, operations=operations, dtype=dtype, device=device, attention=attention)
    model.load_state_dict(state_dict)
    return LoadedMotionModel(model=model, format=fmt)


def _build(fmt: MotionModelFormat, **kwargs) -> MotionModel:
    return MotionModel(fmt.width, mid_block=fmt.has_mid_block, pe_length=fmt.pe_length,
                       image_encoder=fmt.has_image_encoder, image_channels=fmt.image_channels, **kwargs)


def _image_channels(state_dict: Mapping[str, object]) -> int:
    """The latent channels an I2V image encoder reads (4 for SD1.5; another count for a model trained on another
    latent space, such as the small proof's)."""
    conv_in = state_dict.get(IMAGE_ENCODER_PREFIX + "conv_in.weight")
    return conv_in.shape[1] if conv_in is not None and conv_in.ndim == 4 else 4


def quote_keys(keys) -> str:
    """The first few keys for an error message, and how many more there are."""
    keys = sorted(keys)
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def _reject_other_files(state_dict: dict[str, torch.Tensor], name: str) -> None:
    """Recognise the files users most often put in the motion-model folder by mistake."""
    if not state_dict:
        raise MotionModelFormatError(f"{name}: expected a motion module, found no tensors at all")
    if lora := [k for k in state_dict if LORA_KEY.search(k)]:
        raise MotionModelFormatError(f"{name}: this is a LoRA (keys such as {quote_keys(lora)}), not a motion module: "
                                     "put it in models/loras and load it with a LoRA loader")
    if full := [k for k in state_dict if k.startswith("model.diffusion_model.")]:
        raise MotionModelFormatError(f"{name}: this is a full Stable Diffusion checkpoint (keys such as "
                                     f"{quote_keys(full)}), not a motion module: load it with Load Checkpoint")
    if sparse := [k for k in state_dict if k.startswith(SPARSECTRL_KEYS)]:
        raise MotionModelFormatError(f"{name}: this is a SparseCtrl model (keys such as {quote_keys(sparse)}), not a "
                                     "motion module: put it in models/controlnet and load it with Load AnimateLCM "
                                     "SparseCtrl (ALCM_LoadSparseCtrl)")
    if hotshot := [k for k in state_dict if "temporal_attentions" in k]:
        raise MotionModelFormatError(f"{name}: this is a HotshotXL (SDXL) motion module (keys such as "
                                     f"{quote_keys(hotshot)}); expected an SD1.5 motion module (AnimateLCM or "
                                     "AnimateDiff v1/v2/v3)")
    if not any(".motion_modules." in k for k in state_dict):
        raise MotionModelFormatError(f"{name}: expected motion-module keys such as down_blocks.0.motion_modules.0."
                                     f"temporal_transformer.norm.weight, found {quote_keys(state_dict)}")


def _width(state_dict: dict[str, torch.Tensor], name: str) -> tuple[int, ...]:
    """Channels per down level, from the first module's proj_in of each level."""
    levels = sorted({int(m.group(1)) for k in state_dict if (m := _DOWN_LEVEL_KEY.match(k))})
    proj_in = [state_dict.get(f"down_blocks.{i}.motion_modules.0.temporal_transformer.proj_in.weight")
               for i in levels]
    found = tuple(w.shape[0] for w in proj_in if w is not None)
    if len(levels) != len(FULL_WIDTH):
        sdxl = " (an SDXL motion module?)" if len(levels) == 3 else ""
        raise MotionModelFormatError(f"{name}: expected an SD1.5 motion module with {len(FULL_WIDTH)} down levels "
                                     f"(channels {FULL_WIDTH}), found {len(levels)} down levels with channels "
                                     f"{found}{sdxl}")
    if len(found) != len(levels):
        missing = [f"down_blocks.{i}.motion_modules.0.temporal_transformer.proj_in.weight"
                   for i, w in zip(levels, proj_in) if w is None]
        raise MotionModelFormatError(f"{name}: missing keys: {quote_keys(missing)}")
    if any(c % GROUPS for c in found):
        raise MotionModelFormatError(f"{name}: expected channels that are multiples of {GROUPS}, found {found}")
    return found


def _check_layout(state_dict: dict[str, torch.Tensor], fmt: MotionModelFormat, name: str) -> None:
    """Compare keys and shapes with those of the model the format describes (built on the meta device: no memory)."""
    expected = {k: tuple(v.shape) for k, v in _build(fmt, device="meta").state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    problems = []
    if missing := expected.keys() - found.keys():
        problems.append(f"{len(missing)} missing keys ({quote_keys(missing)})")
    if unexpected := found.keys() - expected.keys():
        problems.append(f"{len(unexpected)} unexpected keys ({quote_keys(unexpected)})")
    if wrong := sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k]):
        shapes = ", ".join(f"{k} expected {list(expected[k])} found {list(found[k])}" for k in wrong[:SHOWN])
        problems.append(f"{len(wrong)} keys with the wrong shape ({shapes})")
    if problems:
        raise MotionModelFormatError(f"{name}: not a valid {fmt.kind} motion module with channels {fmt.width}: "
                                     + "; ".join(problems))

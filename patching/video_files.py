"""The pure video I/O of video/ meeting ComfyUI: a LATENT decoded a few frames at a time (with progress and
interrupt), output files that never replace anything, the input folder's videos."""

import logging
import os
from collections.abc import Mapping

import numpy as np
import torch

import comfy.model_management
import comfy.utils
import folder_paths

from ..video.audio import Sound
from ..video.reader import EXTENSIONS, FrameSelection, SourceInfo, expected_frames


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images[..., :3].clamp(0, 1) * 255).round().to(device="cpu", dtype=torch.uint8).numpy()


class ChunkEncoder:
    """Encodes frames handed over a chunk at a time (`video.reader`'s on_chunk), so a long source is never whole in
    memory at full size: only one chunk of frames and the latents so far. Moves the node's progress bar over the
    frames `selection` keeps of the source and stops between chunks on interrupt."""

    def __init__(self, vae, selection: FrameSelection):
        self.vae, self.selection, self.latents, self.progress = vae, selection, [], None

    def __call__(self, frames: np.ndarray, source: SourceInfo) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        if self.progress is None:
            self.progress = comfy.utils.ProgressBar(max(expected_frames(source, self.selection), 1))
        images = torch.from_numpy(frames).float().div_(255)
        self.latents.append(self.vae.encode(images).cpu())
        self.progress.update(frames.shape[0])

    def latent(self) -> dict:
        return {"samples": torch.cat(self.latents)}


def comfy_audio(sound: Sound) -> dict:
    """ComfyUI's AUDIO: float32 waveform [batch 1, channels, samples] and its sample rate."""
    return {"waveform": torch.from_numpy(sound.samples).unsqueeze(0), "sample_rate": sound.sample_rate}


def sound_of(audio: dict) -> Sound:
    """The first item of an AUDIO batch as mono or stereo sound (further channels are dropped, with a warning)."""
    if not isinstance(audio, Mapping) or not {"waveform", "sample_rate"} <= set(audio):  # VHS's is a lazy Mapping
        raise ValueError(f"audio: expected ComfyUI's AUDIO (waveform and sample_rate), got {type(audio).__name__}")
    waveform, rate = audio["waveform"], int(audio["sample_rate"])
    if waveform.ndim == 2:
        waveform = waveform.unsqueeze(0)
    if waveform.ndim != 3 or waveform.shape[1] == 0 or rate <= 0:
        raise ValueError(f"audio: a waveform [batch, channels, samples] at a positive rate is needed, got "
                         f"{list(waveform.shape)} at {rate} Hz")
    if waveform.shape[1] > 2:
        logging.warning("ALCM_SaveVideo: the audio has %d channels; the first two are saved as stereo",
                        waveform.shape[1])
    return Sound(waveform[0, :2].float().cpu().numpy(), rate)


def decoded_frames(latent: dict, vae, frames_per_chunk: int):
    """Decode a video latent a few frames at a time, so only one chunk of full-size frames exists at once.

    Decoding a long video takes a while: it moves the node's progress bar and stops between chunks on interrupt."""
    samples = latent["samples"]
    progress = comfy.utils.ProgressBar(samples.shape[0])
    for start in range(0, samples.shape[0], frames_per_chunk):
        comfy.model_management.throw_exception_if_processing_interrupted()
        images = vae.decode(samples[start:start + frames_per_chunk])
        yield from to_uint8(images.reshape(-1, *images.shape[-3:]))
        progress.update(min(frames_per_chunk, samples.shape[0] - start))


def reserve_output_path(filename_prefix: str, extension: str, width: int, height: int,
                        with_poster: bool, temporary: bool = False) -> tuple[str, str, str, str | None]:
    """A new file in the output folder (or the temp folder, for previews only) for `filename_prefix` (subfolders and
    %date% style fields allowed).

    The counter comes from core (the next free number after the files with this prefix); creating the file with
    O_EXCL makes sure no existing file, nor one another prompt is writing, is ever replaced.
    Returns (path, filename, subfolder, poster path).
    """
    output_dir = folder_paths.get_temp_directory() if temporary else folder_paths.get_output_directory()
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir, width, height)
    while True:
        filename = f"{name}_{counter:05}_.{extension}"
        path = os.path.join(folder, filename)
        poster = os.path.splitext(path)[0] + ".png" if with_poster else None
        try:
            if poster is not None and os.path.exists(poster):
                raise FileExistsError(poster)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return path, filename, subfolder, poster
        except FileExistsError:
            counter += 1


# Folders beyond ComfyUI's input, output and temp folders that a typed path may read, set by whoever runs the
# server (never by a prompt): anyone who can queue a prompt could otherwise read any video or image on its disks.
EXTRA_FOLDERS_VARIABLE = "ALCM_VIDEO_FOLDERS"


def readable_folders() -> list[str]:
    folders = [folder_paths.get_input_directory(), folder_paths.get_output_directory(),
               folder_paths.get_temp_directory()]
    folders += [f for f in os.environ.get(EXTRA_FOLDERS_VARIABLE, "").split(os.pathsep) if f.strip()]
    return [os.path.realpath(os.path.expanduser(f.strip())) for f in folders]


def readable_path(path: str) -> str:
    """`path` (relative to the input folder, or absolute) with links and `..` resolved, if it lies in a folder the
    server reads from; otherwise a ValueError naming the folders and the fix."""
    typed = path.strip().strip('"')
    if not typed:
        raise ValueError("no path given: type a file or folder path, or choose a file from the list")
    full = os.path.realpath(os.path.join(folder_paths.get_input_directory(), os.path.expanduser(typed)))
    folders = readable_folders()
    if any(full == folder or full.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders):
        return full
    raise ValueError(f"{typed!r} is outside the folders this server reads from ({', '.join(folders)}): copy it into "
                     f"ComfyUI's input folder, or have whoever runs the server add its folder to the "
                     f"{EXTRA_FOLDERS_VARIABLE} environment variable (folders separated by {os.pathsep!r})")


def input_videos() -> list[str]:
    folder = folder_paths.get_input_directory()
    return sorted(name for name in os.listdir(folder)
                  if name.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(folder, name)))

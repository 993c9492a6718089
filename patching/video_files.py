"""The pure video I/O of video/ meeting ComfyUI: a LATENT decoded a few frames at a time (with progress and
interrupt), output files that never replace anything, the input folder's videos."""

import os

import numpy as np
import torch

import comfy.model_management
import comfy.utils
import folder_paths

from ..video.reader import EXTENSIONS


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images[..., :3].clamp(0, 1) * 255).round().to(device="cpu", dtype=torch.uint8).numpy()


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
                        with_poster: bool) -> tuple[str, str, str, str | None]:
    """A new file in the output folder for `filename_prefix` (subfolders and %date% style fields allowed).

    The counter comes from core (the next free number after the files with this prefix); creating the file with
    O_EXCL makes sure no existing file, nor one another prompt is writing, is ever replaced.
    Returns (path, filename, subfolder, poster path).
    """
    output_dir = folder_paths.get_output_directory()
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


def input_videos() -> list[str]:
    folder = folder_paths.get_input_directory()
    return sorted(name for name in os.listdir(folder)
                  if name.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(folder, name)))

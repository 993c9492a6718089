"""Video out (mp4/webm/gif/webp, with the workflow inside and an animated preview) and video in, without ffmpeg."""

import os

import torch

import folder_paths
from comfy.cli_args import args
from comfy_api.latest import io, ui

from ..patching.video_files import (comfy_audio, decoded_frames, input_videos, reserve_output_path, sound_of,
                                    to_uint8)
from ..video.audio import read_sound, silence
from ..video.reader import EXTENSIONS, FrameSelection, Resize, VideoReadError, read_video
from ..video.writer import FORMATS, VideoSettings, has_sound, write_video
from ..video.writer import pingpong as pingpong_order
from .types import VideoInfoSocket


class SaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_SaveVideo",
            display_name="AnimateLCM Save Video",
            category="AnimateLCM/video",
            description="Saves frames as mp4 (H.264), webm (VP9), gif or webp in the output folder, with the "
                        "workflow inside, and shows the animation. Needs no ffmpeg.",
            inputs=[
                io.MultiType.Input("images", types=[io.Image, io.Latent],
                                   tooltip="Frames (IMAGE), or a LATENT to decode here chunk by chunk with `vae`."),
                io.Float.Input("frame_rate", default=8.0, min=0.1, max=240.0, step=0.01),
                io.Combo.Input("format", options=list(FORMATS), default="mp4",
                               tooltip="mp4 = H.264 yuv420p (plays everywhere); webm = VP9; gif; webp."),
                io.Int.Input("loop_count", default=0, min=0, max=100,
                             tooltip="gif/webp: how many times it plays; 0 = forever."),
                io.Boolean.Input("pingpong", default=False, tooltip="Play forward, then backward."),
                io.Int.Input("crf", default=19, min=0, max=63,
                             tooltip="mp4/webm quality: lower = better and bigger (mp4 uses 0-51)."),
                io.Int.Input("quality", default=90, min=1, max=100, tooltip="webp quality; 100 = lossless."),
                io.String.Input("filename_prefix", default="AnimateLCM/video",
                                tooltip="Subfolders allowed. A new number is added; existing files are never "
                                        "replaced."),
                io.Vae.Input("vae", optional=True, tooltip="Needed when `images` is a LATENT."),
                io.Int.Input("decode_chunk", default=16, min=1, max=4096, optional=True,
                             tooltip="Frames decoded at once from a LATENT: lower uses less memory."),
                io.Audio.Input("audio", optional=True,
                               tooltip="Sound for mp4 (AAC) or webm (Opus), cut or padded with silence to the "
                                       "video's length; gif and webp have no sound."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, frame_rate: float, format: str, loop_count: int, pingpong: bool, crf: int,
                quality: int, filename_prefix: str, vae=None, decode_chunk: int = 16, audio=None) -> io.NodeOutput:
        sound = sound_of(audio) if audio is not None and has_sound(format) else None
        frames, (height, width) = cls._frames(images, vae, decode_chunk)
        if pingpong:
            frames = pingpong_order(list(frames))
        metadata = cls._metadata()
        path, filename, subfolder, poster = reserve_output_path(
            filename_prefix, format, width, height, with_poster=bool(metadata) and format in ("gif", "webp"))
        settings = VideoSettings(format=format, frame_rate=frame_rate, loop_count=loop_count,
                                 crf=min(crf, 51) if format == "mp4" else crf, quality=quality)
        try:
            write_video(path, frames, settings, metadata, poster_path=poster, sound=sound)
        except BaseException:
            os.remove(path)  # only the file reserved above, never anything that was there before
            raise
        preview = ui.PreviewVideo([ui.SavedResult(filename, subfolder, io.FolderType.output)]).as_dict()
        if audio is not None and sound is None:
            preview["text"] = [f"The audio was not saved: {format} has no sound track; choose mp4 or webm."]
        return io.NodeOutput(ui=preview)

    @classmethod
    def _frames(cls, images, vae, decode_chunk: int):
        if isinstance(images, dict) and "samples" in images:
            if vae is None:
                raise ValueError("ALCM_SaveVideo: `images` is a LATENT, so it needs a VAE to decode it: connect the "
                                 "checkpoint's VAE to the `vae` input (or decode with VAEDecode first).")
            samples = images["samples"]
            if samples.ndim != 4 or samples.shape[0] == 0:
                raise ValueError(f"ALCM_SaveVideo: expected a video latent [frames, channels, h, w], got "
                                 f"{list(samples.shape)}.")
            scale = vae.spacial_compression_decode()
            return decoded_frames(images, vae, decode_chunk), (samples.shape[-2] * scale, samples.shape[-1] * scale)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError("ALCM_SaveVideo: `images` has no frames to save.")
        return iter(to_uint8(images)), tuple(images.shape[1:3])

    @classmethod
    def _metadata(cls) -> dict:
        if args.disable_metadata or cls.hidden is None:
            return {}
        metadata = dict(cls.hidden.extra_pnginfo or {})
        if cls.hidden.prompt is not None:
            metadata["prompt"] = cls.hidden.prompt
        return metadata


class LoadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_LoadVideo",
            display_name="AnimateLCM Load Video",
            category="AnimateLCM/video",
            description="Loads a video (mp4, webm, mkv, mov, avi) or an animated GIF/WebP from the input folder as "
                        "frames, choosing and resizing frames while it reads.",
            inputs=[
                io.Combo.Input("video", options=input_videos(), upload=io.UploadType.video,
                               tooltip="Upload an mp4/webm, or put any supported file in ComfyUI's input folder."),
                io.Int.Input("frame_load_cap", default=16, min=0, max=100000,
                             tooltip="At most this many frames; 0 = all."),
                io.Int.Input("skip_first_frames", default=0, min=0, max=100000),
                io.Int.Input("select_every_nth", default=1, min=1, max=1000),
                io.Float.Input("force_rate", default=0.0, min=0.0, max=240.0, step=0.01,
                               tooltip="Resample to this many frames per second first (repeating or dropping "
                                       "frames); 0 = the file's rate."),
                io.Int.Input("custom_width", default=0, min=0, max=8192, step=8,
                             tooltip="0 = the source width (or kept in proportion to custom_height)."),
                io.Int.Input("custom_height", default=0, min=0, max=8192, step=8,
                             tooltip="0 = the source height (or kept in proportion to custom_width)."),
                io.Boolean.Input("multiple_of_8", default=True,
                                 tooltip="Round the size to a multiple of 8, as Stable Diffusion latents need."),
            ],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Int.Output(display_name="frame_count"),
                io.Float.Output(display_name="frame_rate", tooltip="Of the frames returned (after force_rate and "
                                                                   "select_every_nth)."),
                VideoInfoSocket.Output(display_name="video_info",
                                       tooltip="The file's fps, frame count, duration and size, and the loaded "
                                               "frames' (VideoHelperSuite's VHS_VIDEOINFO keys)."),
                io.Audio.Output(display_name="audio",
                                tooltip="The sound of exactly the frames returned (from the first one, as long as "
                                        "they last at frame_rate); silence when the file has none."),
            ],
        )

    @classmethod
    def execute(cls, video: str, frame_load_cap: int, skip_first_frames: int, select_every_nth: int,
                force_rate: float, custom_width: int, custom_height: int, multiple_of_8: bool) -> io.NodeOutput:
        path = folder_paths.get_annotated_filepath(video)
        try:
            loaded = read_video(path, FrameSelection(frame_load_cap, skip_first_frames, select_every_nth, force_rate),
                                Resize(custom_width, custom_height, multiple_of_8))
            sound = read_sound(path, loaded.start_time, loaded.duration)
        except VideoReadError as error:
            raise ValueError(f"ALCM_LoadVideo: {error}") from None
        images = torch.from_numpy(loaded.frames).float().div_(255)
        sound = sound if sound is not None else silence(loaded.duration)
        return io.NodeOutput(images, images.shape[0], loaded.frame_rate, loaded.info(), comfy_audio(sound))

    @classmethod
    def fingerprint_inputs(cls, video: str, **options) -> str:
        """A file replaced under the same name loads again; the options are part of the cache key already."""
        path = folder_paths.get_annotated_filepath(video)
        stat = os.stat(path) if os.path.exists(path) else None
        return f"{stat.st_mtime_ns}:{stat.st_size}" if stat else "missing"

    @classmethod
    def validate_inputs(cls, video: str) -> bool | str:
        if not folder_paths.exists_annotated_filepath(video):
            return f"ALCM_LoadVideo: no file {video!r} in the input folder: upload it or copy it there."
        if not video.lower().split(" [")[0].endswith(EXTENSIONS):
            return f"ALCM_LoadVideo: {video!r} is not a supported video ({', '.join(EXTENSIONS)})."
        return True

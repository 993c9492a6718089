"""Video out (mp4/webm/gif/webp, with the workflow inside and an animated preview) and video in, without ffmpeg."""

import os

import torch

import folder_paths
from comfy.cli_args import args
from comfy_api.latest import io, ui

from ..patching.video_files import (ChunkEncoder, comfy_audio, decoded_frames, input_videos, readable_path,
                                    reserve_output_path, sound_of, to_uint8)
from ..video.audio import read_sound, silence
from ..video.reader import EXTENSIONS, FrameSelection, Resize, read_image_sequence, read_video
from ..video.writer import ANIMATED_IMAGES, FORMATS, VideoSettings, extension, has_sound, write_video
from ..video.writer import pingpong as pingpong_order
from .types import VideoInfoSocket


class SaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_SaveVideo",
            display_name="AnimateLCM Save Video",
            category="AnimateLCM/video",
            description="Saves frames as a video (H.264, VP9, H.265, AV1, ProRes, lossless FFV1 or PNG), gif or webp "
                        "in the output folder, with the workflow and any sound inside, and shows the animation. "
                        "Needs no ffmpeg.",
            inputs=[
                io.MultiType.Input("images", types=[io.Image, io.Latent],
                                   tooltip="Frames (IMAGE), or a LATENT to decode here chunk by chunk with `vae`."),
                io.Float.Input("frame_rate", default=8.0, min=0.1, max=240.0, step=0.01),
                io.Combo.Input("format", options=list(FORMATS), default="mp4",
                               tooltip="mp4 = H.264 yuv420p (plays everywhere, browsers included); webm = VP9 "
                                       "(browsers too); mp4 h265 (hvc1, for Apple players) and av1, in 8 or 10 bits; "
                                       "mov prores 422 hq (10-bit, for editors); mkv ffv1 and mov png: lossless; "
                                       "gif; webp. Only mp4 and webm play in the node's preview."),
                io.Int.Input("loop_count", default=0, min=0, max=100,
                             tooltip="gif/webp: how many times it plays; 0 = forever."),
                io.Boolean.Input("pingpong", default=False, tooltip="Play forward, then backward."),
                io.Int.Input("crf", default=19, min=0, max=63,
                             tooltip="Quality of mp4/webm/h265/av1: lower = better and bigger (H.264 and H.265 use "
                                     "0-51). ProRes and the lossless formats ignore it."),
                io.Int.Input("quality", default=90, min=1, max=100, tooltip="webp quality; 100 = lossless."),
                io.String.Input("filename_prefix", default="AnimateLCM/video",
                                tooltip="Subfolders allowed. A new number is added; existing files are never "
                                        "replaced."),
                io.Vae.Input("vae", optional=True, tooltip="Needed when `images` is a LATENT."),
                io.Int.Input("decode_chunk", default=16, min=1, max=4096, optional=True,
                             tooltip="Frames decoded at once from a LATENT: lower uses less memory."),
                io.Audio.Input("audio", optional=True,
                               tooltip="Sound, cut or padded with silence to the video's length: AAC in mp4/mov, "
                                       "Opus in webm, FLAC in mkv; gif and webp have no sound."),
                io.Boolean.Input("save_output", default=True, optional=True,
                                 tooltip="Off: write to ComfyUI's temp folder, for the preview only (cleared when "
                                         "ComfyUI restarts)."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, frame_rate: float, format: str, loop_count: int, pingpong: bool, crf: int,
                quality: int, filename_prefix: str, vae=None, decode_chunk: int = 16, audio=None,
                save_output: bool = True) -> io.NodeOutput:
        sound = sound_of(audio) if audio is not None and has_sound(format) else None
        frames, (height, width) = cls._frames(images, vae, decode_chunk)
        if pingpong:
            frames = pingpong_order(list(frames))
        metadata = cls._metadata()
        path, filename, subfolder, poster = reserve_output_path(
            filename_prefix, extension(format), width, height, with_poster=bool(metadata) and format in ANIMATED_IMAGES,
            temporary=not save_output)
        settings = VideoSettings(format=format, frame_rate=frame_rate, loop_count=loop_count, crf=crf, quality=quality)
        try:
            write_video(path, frames, settings, metadata, poster_path=poster, sound=sound)
        except BaseException:
            os.remove(path)  # only the file reserved above, never anything that was there before
            raise
        folder = io.FolderType.output if save_output else io.FolderType.temp
        preview = ui.PreviewVideo([ui.SavedResult(filename, subfolder, folder)]).as_dict()
        if audio is not None and sound is None:
            preview["text"] = [f"The audio was not saved: {format} has no sound track; choose a video format."]
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


def video_input() -> io.Combo.Input:
    return io.Combo.Input("video", options=input_videos(), upload=io.UploadType.video,
                          tooltip="A file in ComfyUI's input folder: upload mp4/webm with the frontend's button, or "
                                  "any format (gif, webp, mkv, mov, avi too) with 'upload any video, gif or webp'.")


def frame_choice_inputs(own_rate: str, own_size: str) -> list:
    """The frame choices and size inputs every loader shares, in this order (saved workflows depend on it)."""
    return [
        io.Int.Input("frame_load_cap", default=16, min=0, max=100000, tooltip="At most this many frames; 0 = all."),
        io.Int.Input("skip_first_frames", default=0, min=0, max=100000),
        io.Int.Input("select_every_nth", default=1, min=1, max=1000),
        io.Float.Input("force_rate", default=0.0, min=0.0, max=240.0, step=0.01,
                       tooltip=f"Resample to this many frames per second first (repeating or dropping frames); "
                               f"0 = {own_rate}."),
        io.Int.Input("custom_width", default=0, min=0, max=8192, step=8,
                     tooltip=f"0 = the {own_size} width (or kept in proportion to custom_height)."),
        io.Int.Input("custom_height", default=0, min=0, max=8192, step=8,
                     tooltip=f"0 = the {own_size} height (or kept in proportion to custom_width)."),
        io.Boolean.Input("multiple_of_8", default=True,
                         tooltip="Round the size to a multiple of 8, as Stable Diffusion latents need."),
    ]


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
                video_input(),
                *frame_choice_inputs("the file's rate", "source"),
                io.String.Input("path", default="", optional=True,
                                tooltip="A file on the server to load instead of the chosen one: relative to the "
                                        "input folder, or absolute inside the input, output or temp folder (or a "
                                        "folder the server's owner allows: README, Video files)."),
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
                force_rate: float, custom_width: int, custom_height: int, multiple_of_8: bool,
                path: str = "") -> io.NodeOutput:
        try:
            file = cls._file(video, path)
            loaded = read_video(file, FrameSelection(frame_load_cap, skip_first_frames, select_every_nth, force_rate),
                                Resize(custom_width, custom_height, multiple_of_8))
            sound = read_sound(file, loaded.start_time, loaded.duration)
        except ValueError as error:  # VideoReadError included
            raise ValueError(f"ALCM_LoadVideo: {error}") from None
        images = torch.from_numpy(loaded.frames).float().div_(255)
        sound = sound if sound is not None else silence(loaded.duration)
        return io.NodeOutput(images, images.shape[0], loaded.frame_rate, loaded.info(), comfy_audio(sound))

    @staticmethod
    def _file(video: str, path: str | None) -> str:
        """The typed path if any (in a folder the server reads from), else the chosen name, which must stay in its
        folder: no `..` or link out of it (ComfyUI 0.33 refuses these itself, 0.3.75 does not)."""
        if path and path.strip():
            return readable_path(path)
        name, base = folder_paths.annotated_filepath(video)
        base = os.path.realpath(base or folder_paths.get_input_directory())
        full = os.path.realpath(os.path.join(base, name))
        if not full.startswith(base.rstrip(os.sep) + os.sep):
            raise ValueError(f"{video!r} leads outside the input folder (through `..` or a link): choose a file "
                             f"from the list, or type its path in `path`")
        return full

    @classmethod
    def fingerprint_inputs(cls, video: str, path: str = "", **options) -> str:
        """A file replaced under the same name loads again; the options are part of the cache key already."""
        try:
            stat = os.stat(cls._file(video, path))
        except (ValueError, OSError):
            return "missing"
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    @classmethod
    def validate_inputs(cls, video: str | None = None, path: str | None = "") -> bool | str:
        if path is None or (video is None and not path):  # linked: checked when it runs
            return True
        typed = bool(path.strip())
        try:
            file = cls._file(video, path)
        except ValueError as error:
            return f"ALCM_LoadVideo: {error}"
        if not os.path.isfile(file):
            where = f"no file at {path!r}: check the path" if typed else \
                f"no file {video!r} in the input folder: upload it or copy it there"
            return f"ALCM_LoadVideo: {where}."
        if not file.lower().endswith(EXTENSIONS):
            return f"ALCM_LoadVideo: {os.path.basename(file)!r} is not a supported video ({', '.join(EXTENSIONS)})."
        return True


class LoadVideoLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_LoadVideoLatent",
            display_name="AnimateLCM Load Video as Latent",
            category="AnimateLCM/video",
            description="Loads a video like AnimateLCM Load Video and encodes it with the VAE a few frames at a "
                        "time while reading, so a long clip never exists whole at full size: for video-to-video.",
            inputs=[
                video_input(),
                io.Vae.Input("vae"),
                *frame_choice_inputs("the file's rate", "source"),
                io.String.Input("path", default="", optional=True,
                                tooltip="A file on the server to load instead of the chosen one (as in AnimateLCM "
                                        "Load Video)."),
                io.Int.Input("encode_chunk", default=16, min=1, max=4096, optional=True,
                             tooltip="Frames read and encoded at once: lower uses less memory."),
            ],
            outputs=[
                io.Latent.Output(display_name="latent"),
                io.Int.Output(display_name="frame_count"),
                io.Float.Output(display_name="frame_rate"),
                VideoInfoSocket.Output(display_name="video_info"),
                io.Audio.Output(display_name="audio"),
            ],
        )

    @classmethod
    def execute(cls, video: str, vae, frame_load_cap: int, skip_first_frames: int, select_every_nth: int,
                force_rate: float, custom_width: int, custom_height: int, multiple_of_8: bool, path: str = "",
                encode_chunk: int = 16) -> io.NodeOutput:
        selection = FrameSelection(frame_load_cap, skip_first_frames, select_every_nth, force_rate)
        try:
            file = LoadVideo._file(video, path)
            encoder = ChunkEncoder(vae, selection)
            loaded = read_video(file, selection, Resize(custom_width, custom_height, multiple_of_8),
                                on_chunk=encoder, chunk_size=encode_chunk)
            sound = read_sound(file, loaded.start_time, loaded.duration)
        except ValueError as error:  # VideoReadError included
            raise ValueError(f"ALCM_LoadVideoLatent: {error}") from None
        sound = sound if sound is not None else silence(loaded.duration)
        return io.NodeOutput(encoder.latent(), loaded.count, loaded.frame_rate, loaded.info(), comfy_audio(sound))

    @classmethod
    def fingerprint_inputs(cls, video: str, path: str = "", **options) -> str:
        return LoadVideo.fingerprint_inputs(video, path)

    @classmethod
    def validate_inputs(cls, video: str | None = None, path: str | None = "") -> bool | str:
        problem = LoadVideo.validate_inputs(video, path)
        return problem if problem is True else problem.replace("ALCM_LoadVideo:", "ALCM_LoadVideoLatent:", 1)


class LoadImageSequence(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ALCM_LoadImageSequence",
            display_name="AnimateLCM Load Image Sequence",
            category="AnimateLCM/video",
            description="Loads a folder of numbered images (png, jpg, webp, bmp, tif) as frames in natural order "
                        "(frame2 before frame10), with the same frame choices as AnimateLCM Load Video.",
            inputs=[
                io.String.Input("folder", default="",
                                tooltip="Relative to the input folder, or absolute inside the input, output or temp "
                                        "folder (or a folder the server's owner allows: README, Video files)."),
                io.Float.Input("frame_rate", default=8.0, min=0.1, max=240.0, step=0.01,
                               tooltip="The rate the images are meant to play at (a sequence does not say)."),
                *frame_choice_inputs("frame_rate", "images'"),
            ],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Int.Output(display_name="frame_count"),
                io.Float.Output(display_name="frame_rate"),
                VideoInfoSocket.Output(display_name="video_info"),
            ],
        )

    @classmethod
    def execute(cls, folder: str, frame_rate: float, frame_load_cap: int, skip_first_frames: int,
                select_every_nth: int, force_rate: float, custom_width: int, custom_height: int,
                multiple_of_8: bool) -> io.NodeOutput:
        try:
            loaded = read_image_sequence(readable_path(folder), frame_rate,
                                         FrameSelection(frame_load_cap, skip_first_frames, select_every_nth,
                                                        force_rate), Resize(custom_width, custom_height, multiple_of_8))
        except ValueError as error:  # VideoReadError included
            raise ValueError(f"ALCM_LoadImageSequence: {error}") from None
        images = torch.from_numpy(loaded.frames).float().div_(255)
        return io.NodeOutput(images, images.shape[0], loaded.frame_rate, loaded.info())

    @classmethod
    def fingerprint_inputs(cls, folder: str, **options) -> str:
        """New, removed or replaced images load again."""
        try:
            full = readable_path(folder)
            return str(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(full)))
        except (ValueError, OSError):
            return "missing"

    @classmethod
    def validate_inputs(cls, folder: str | None = None) -> bool | str:
        if folder is None:  # linked: checked when it runs
            return True
        try:
            full = readable_path(folder)
        except ValueError as error:
            return f"ALCM_LoadImageSequence: {error}"
        if not os.path.isdir(full):
            return f"ALCM_LoadImageSequence: no folder at {folder!r}: give a folder of numbered images."
        return True

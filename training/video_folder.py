"""Your own training videos: a folder of video files, each with a caption in a .txt file of the same name
(clip.mp4 + clip.txt). Random clips of `frames` frames (every `stride`-th source frame) are centre-cropped to squares
and resized to `size` pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch

from ..video.reader import FrameSelection, Resize, read_video

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".webp")


@dataclass
class Clips:
    videos: torch.Tensor  # [count, frames, 3, size, size] float32 in [-1, 1]
    captions: list[str]


@dataclass
class VideoFolder:
    path: str
    frames: int = 16
    size: int = 512
    stride: int = 1
    _lengths: dict[Path, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        folder = Path(self.path)
        if not folder.is_dir():
            raise ValueError(f"data.path {self.path}: no such folder; it must hold videos with captions "
                             "(clip.mp4 + clip.txt)")
        self.videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not self.videos:
            raise ValueError(f"data.path {self.path}: no videos ({', '.join(VIDEO_SUFFIXES)}) in the folder")
        missing = [p.name for p in self.videos if not p.with_suffix(".txt").is_file()]
        if missing:
            raise ValueError(f"data.path {self.path}: {len(missing)} videos have no caption file, e.g. "
                             f"{missing[0]} (expected {Path(missing[0]).stem}.txt next to it)")
        self.captions = {p: p.with_suffix(".txt").read_text().strip() for p in self.videos}

    def _length(self, path: Path) -> int:
        if path not in self._lengths:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                count = stream.frames or sum(1 for _ in container.decode(stream))
            needed = (self.frames - 1) * self.stride + 1
            if count < needed:
                raise ValueError(f"{path.name}: {count} frames, fewer than the {needed} a clip of {self.frames} "
                                 f"frames at stride {self.stride} needs: lower data.frames or data.stride")
            self._lengths[path] = count
        return self._lengths[path]

    def sample(self, count: int, generator: torch.Generator) -> Clips:
        picks = torch.randint(len(self.videos), (count,), generator=generator).tolist()
        videos = []
        for index in picks:
            path = self.videos[index]
            last_start = self._length(path) - (self.frames - 1) * self.stride - 1
            start = int(torch.randint(last_start + 1, (1,), generator=generator))
            loaded = read_video(str(path), FrameSelection(frame_load_cap=self.frames, skip_first_frames=start,
                                                          select_every_nth=self.stride), Resize(multiple_of_8=False))
            videos.append(self._square(loaded.frames))
        return Clips(torch.stack(videos), [self.captions[self.videos[i]] for i in picks])

    def _square(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [F, H, W, 3] -> float [F, 3, size, size] in [-1, 1]: centre crop, then area resize."""
        height, width = frames.shape[1:3]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        video = torch.from_numpy(frames[:, top:top + side, left:left + side]).permute(0, 3, 1, 2).float()
        video = torch.nn.functional.interpolate(video, size=(self.size, self.size), mode="area"
                                                if side > self.size else "bicubic", align_corners=None)
        return (video / 127.5 - 1).clamp(-1, 1)

"""Moving shapes: a synthetic captioned video dataset, drawn on the fly, for a small proof of consistency distillation.

Each clip is one filled shape of one saturated colour on black, sliding in a straight line, captioned
"a {colour} {shape} moving {direction}". 3 shapes x 3 colours x 4 directions = 36 prompts, small enough to generate a
video for every prompt and check it with a classifier (training/proof/evaluation.py), and a tiny word-level text encoder
covers the whole VOCABULARY.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue")
DIRECTIONS = ("left", "right", "up", "down")
VOCABULARY = ("a", "moving", *SHAPES, *COLOURS, *DIRECTIONS)

BACKGROUND = -1.0
RGB = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])  # in COLOURS order
# Unit displacement (dx, dy) per direction; image rows grow downwards, so "up" is -y.
VELOCITY = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
RADIUS = 1 / 5  # of the frame size: circle radius, square half-side, triangle half-base and half-height
TRAVEL = (0.25, 1 / 3)  # range of the distance covered over a clip, in frame sizes: a slightly random speed
# Where a path starts on its axis of motion: anywhere it fits, or near the frame's centre (within half a radius).
# With "anywhere" a denoiser gains nothing measurable from the direction word: it reads the motion off the noisy
# frames themselves. From "centre" a still frame's place shows the direction, as a photo's motion cues do: the word
# is worth a little to a min-SNR teacher, and a v-weighted one (train.v_weighting) follows it (docs/proof.md).
STARTS = ("anywhere", "centre")


def caption(shape: int, colour: int, direction: int) -> str:
    return f"a {COLOURS[colour]} {SHAPES[shape]} moving {DIRECTIONS[direction]}"


def all_labels() -> torch.Tensor:
    """[36, 3] long (shape, colour, direction) of every prompt, in the order of all_captions()."""
    return torch.tensor(list(itertools.product(range(len(SHAPES)), range(len(COLOURS)), range(len(DIRECTIONS)))))


def all_captions() -> list[str]:
    """The 36 captions, in the order of all_labels(): the prompts to generate one video each for in evaluation."""
    return [caption(*label) for label in all_labels().tolist()]


@dataclass
class ShapeClips:
    videos: torch.Tensor  # [count, frames, 3, size, size] float32 in [-1, 1]
    captions: list[str]
    labels: torch.Tensor  # [count, 3] long: shape, colour, direction indices

    def __len__(self) -> int:
        return len(self.captions)


@dataclass(frozen=True)
class MovingShapes:
    frames: int = 8
    size: int = 32
    start: str = "anywhere"  # one of STARTS

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise ValueError(f"the moving shapes' start must be one of {STARTS}, got {self.start!r}")

    def sample(self, count: int, generator: torch.Generator) -> ShapeClips:
        """`count` random clips, uniform over the 36 prompts; the same generator state gives the same clips."""
        labels = torch.stack([torch.randint(0, n, (count,), generator=generator)
                              for n in (len(SHAPES), len(COLOURS), len(DIRECTIONS))], dim=1)
        return ShapeClips(self.render(labels, generator), [caption(*label) for label in labels.tolist()], labels)

    def render(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Clips for the given [count, 3] labels, with random start positions and speeds; the start is drawn (or, from
        the centre, moved) so the whole path keeps the shape inside the frame."""
        count, size, radius = labels.shape[0], self.size, RADIUS * self.size
        travel = size * (TRAVEL[0] + (TRAVEL[1] - TRAVEL[0]) * torch.rand(count, generator=generator))
        velocity = VELOCITY[labels[:, 2]] * travel[:, None]  # [count, 2] displacement over the clip
        # The centre stays within [radius, size - radius] on both axes from start to start + velocity.
        low = radius - velocity.clamp(max=0)
        high = size - radius - velocity.clamp(min=0)
        start = low + (high - low) * torch.rand(count, 2, generator=generator)
        if self.start == "centre":  # on the axis of motion only; the other keeps its random place
            near = size / 2 + radius * (torch.rand(count, 2, generator=generator) - 0.5)
            start = torch.where(velocity != 0, torch.minimum(torch.maximum(near, low), high), start)
        progress = torch.linspace(0, 1, self.frames) if self.frames > 1 else torch.zeros(1)
        centre = start[:, None] + progress[None, :, None] * velocity[:, None]  # [count, frames, 2]

        pixel = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres; the frame spans [0, size]
        dx = pixel[None, None, None, :] - centre[..., 0, None, None]  # [count, frames, 1, size]
        dy = pixel[None, None, :, None] - centre[..., 1, None, None]  # [count, frames, size, 1]
        circle = dx ** 2 + dy ** 2 <= radius ** 2
        square = (dx.abs() <= radius) & (dy.abs() <= radius)
        # Upright isosceles triangle: apex at dy = -radius, base at dy = +radius, half-width growing from 0 to radius.
        triangle = (dy <= radius) & (dx.abs() <= (dy + radius) / 2)
        shape = labels[:, 0, None, None, None]
        mask = torch.where(shape == 0, circle, torch.where(shape == 1, square, triangle))  # [count, frames, H, W]

        colour = RGB[labels[:, 1]][:, None, :, None, None]  # [count, 1, 3, 1, 1]
        return torch.where(mask[:, :, None], colour, torch.full_like(colour, BACKGROUND)).float()

"""The AnimateLCM-I2V image encoder (`img_encoder` in the checkpoint), in plain PyTorch.

Written from docs/reference.md, section 4: the VAE latent of the still image goes through a 3x3
`conv_in`, each frame adds `motion_scale` times the sinusoidal encoding of its position in the clip, and 8 residual
blocks (2 per UNet down level) turn that into one feature map per level, the size of that level's hidden states.
The UNet adds them in its down blocks, before each level's second motion module (the glue code does that, not this
module). Module and parameter names mirror the checkpoint keys without the `img_encoder.` prefix.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .motion_module import COMPUTED_PE_LENGTH, FULL_WIDTH, Operations, sinusoidal_position_encoding

BLOCKS_PER_LEVEL = 2


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve height and width with a 2x2 average, rounding odd sizes up as the UNet's stride-2 convolutions do:
    an odd last row or column is first repeated (replicate padding at the bottom/right)."""
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        x = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
    return F.avg_pool2d(x, kernel_size=2)


class ImageEncoderBlock(nn.Module):
    """x -> [downsample] -> [1x1 in_conv where the channels change] -> x + block2(relu(block1(x))).

    block1 is 3x3, block2 1x1 (zero-initialised in training, so a fresh adapter starts as the identity).
    """

    def __init__(self, in_channels: int, channels: int, downsamples: bool, operations: Operations = nn,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        super().__init__()
        factory = {"dtype": dtype, "device": device}
        self.downsamples = downsamples
        self.in_conv = operations.Conv2d(in_channels, channels, 1, **factory) if in_channels != channels else None
        self.block1 = operations.Conv2d(channels, channels, 3, padding=1, **factory)
        self.block2 = operations.Conv2d(channels, channels, 1, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsamples:
            x = downsample(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))


class ImageEncoder(nn.Module):
    """The I2V adapter: the image latent and each frame's position in, one feature map per UNet down level out.

    Args:
        width: channels per UNet level, highest resolution first; SD1.5 is (320, 640, 1280, 1280).
        latent_channels: channels of the VAE latent (4 for SD1.5).
        operations: where Conv2d comes from (`torch.nn` or a ComfyUI ops class).
    """

    def __init__(self, width: tuple[int, ...] = FULL_WIDTH, latent_channels: int = 4, operations: Operations = nn,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        super().__init__()
        factory = {"dtype": dtype, "device": device}
        self.width = tuple(width)
        self.max_frames = COMPUTED_PE_LENGTH
        self.conv_in = operations.Conv2d(latent_channels, width[0], 3, padding=1, **factory)
        blocks, previous = [], width[0]
        for level, channels in enumerate(width):
            for j in range(BLOCKS_PER_LEVEL):
                first = j == 0
                blocks.append(ImageEncoderBlock(previous if first else channels, channels,
                                                downsamples=first and level > 0, operations=operations, **factory))
            previous = channels
        self.body = nn.ModuleList(blocks)
        # Computed like the motion modules' encoding, never stored in the file. At least float32: it is added in
        # the compute dtype, which may be wider than the storage dtype.
        pe_dtype = torch.promote_types(dtype or torch.float32, torch.float32)
        pe = sinusoidal_position_encoding(self.max_frames, width[0])[0].to(device=device, dtype=pe_dtype)
        self.register_buffer("position_encoding", pe, persistent=False)

    def forward(self, latent: torch.Tensor, positions: torch.Tensor, motion_scale: float) -> list[torch.Tensor]:
        """latent: (1 or N, latent_channels, h, w), the image's VAE latent (model space, x 0.18215); positions: the
        N frames' positions within their clip or context window (0..F-1). Returns one map per level, level l of
        shape (N, width[l], ceil(h / 2^l), ceil(w / 2^l)).

        A batch-1 latent goes through conv_in once and is broadcast over the frames. With motion_scale 0 every
        frame gets the same input, so the whole encoder runs once and the frames share (expand) its outputs.
        """
        positions = torch.as_tensor(positions, device=latent.device).long().flatten()
        frames = positions.numel()
        if latent.shape[0] not in (1, frames):
            raise ValueError(f"the image latent has a batch of {latent.shape[0]}: expected 1 or one per frame "
                             f"({frames})")
        if frames:  # an index past the table would be a device-side assert on CUDA, not a readable error
            first, last = (int(p) for p in torch.aminmax(positions))
            if first < 0 or last >= self.max_frames:
                raise ValueError(f"frame positions must lie in 0..{self.max_frames - 1} (within the clip or "
                                 f"context window), found {first}..{last}")

        # 1. The latent, plus where each frame is in the clip
        h = self.conv_in(latent)
        shared = motion_scale == 0 and latent.shape[0] == 1
        if not shared:
            pe = self.position_encoding.to(h.device)[positions]
            h = h + (motion_scale * pe).to(h.dtype)[:, :, None, None]

        # 2. Residual blocks; each level's output is the second block's
        features = []
        for i, block in enumerate(self.body):
            h = block(h)
            if i % BLOCKS_PER_LEVEL == BLOCKS_PER_LEVEL - 1:
                features.append(h.expand(frames, *h.shape[1:]) if shared else h)
        return features

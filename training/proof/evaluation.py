"""Numbers for generated moving-shape clips: does the clip show its prompt (prompt accuracy), is it steady from
frame to frame (temporal consistency), and how far are the clips as a set from real ones (Frechet distance), all
read by a small classifier trained on real clips.

The classifier plays the part CLIP and I3D play in video papers: prompt accuracy replaces the CLIP text-video score,
temporal consistency is the same mean cosine similarity of consecutive frame embeddings, and the Frechet distance
is FVD's formula on the classifier's clip embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..shapes import BACKGROUND, COLOURS, DIRECTIONS, SHAPES, MovingShapes

EVAL_BATCH = 256


class ClipClassifier(nn.Module):
    """Per-frame CNN embeddings; shape and colour from their mean over frames, direction from their linear trend.

    Two coordinate channels are appended to the input: global average pooling is otherwise blind to where the shape
    is, and the trend of a position-aware embedding is what tells the direction apart. Each frame's background (its
    per-channel median) is subtracted first, and training paints real clips on random backgrounds: generated clips
    often get the background's colour wrong, frame by frame, which is a flaw of its own, not a wrong shape, colour
    or direction. With `period` p > 1 the background is taken per pixel position modulo p: a model that folds p x p
    pixels into channels (model.patch) gives each position its own cast, a p x p grid over the frame.
    """

    def __init__(self, width: int = 16, period: int = 1) -> None:
        super().__init__()
        self.period = period
        channels = (5, width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
        self.cnn = nn.Sequential(*layers)
        self.dim = channels[-1]
        self.shape_head = nn.Linear(self.dim, len(SHAPES))
        self.colour_head = nn.Linear(self.dim, len(COLOURS))
        self.direction_head = nn.Sequential(nn.Linear(2 * self.dim, self.dim), nn.ReLU(),
                                            nn.Linear(self.dim, len(DIRECTIONS)))

    def frame_embeddings(self, videos: torch.Tensor) -> torch.Tensor:
        """[B, F, 3, H, W] in [-1, 1] -> [B, F, D]."""
        b, f, _, h, w = videos.shape
        frames = (videos - self.background(videos)).reshape(b * f, 3, h, w)
        y = torch.linspace(-1, 1, h, device=videos.device, dtype=videos.dtype)
        x = torch.linspace(-1, 1, w, device=videos.device, dtype=videos.dtype)
        coords = torch.stack(torch.meshgrid(y, x, indexing="ij")).expand(b * f, 2, h, w)
        features = self.cnn(torch.cat([frames, coords], dim=1))
        return features.mean(dim=(2, 3)).reshape(b, f, self.dim)

    def background(self, videos: torch.Tensor) -> torch.Tensor:
        """[B, F, 3, H, W] -> same: per frame, the median of the pixels at the same position modulo `period` (per
        channel when H or W is not a multiple of it)."""
        b, f, c, h, w = videos.shape
        p = self.period if h % self.period == 0 and w % self.period == 0 else 1
        tiles = videos.reshape(b, f, c, h // p, p, w // p, p).permute(0, 1, 2, 4, 6, 3, 5)  # [B, F, C, p, p, h, w]
        median = tiles.flatten(5).median(dim=5).values  # [B, F, C, p, p]
        return median.repeat(1, 1, 1, h // p, w // p)

    def clip_embeddings(self, videos: torch.Tensor) -> torch.Tensor:
        """[B, F, 3, H, W] -> [B, 2D]: the frame embeddings' mean and their linear trend over the clip."""
        e = self.frame_embeddings(videos)
        # Least-squares slope of e against time measured in clip lengths: the change over the whole clip, using
        # every frame, the same scale for any frame count (zero for a single frame).
        tau = torch.linspace(0, 1, e.shape[1], device=e.device, dtype=e.dtype)
        tau = tau - tau.mean()
        trend = (tau[None, :, None] * e).sum(dim=1) / (tau ** 2).sum().clamp_min(1e-8)
        return torch.cat([e.mean(dim=1), trend], dim=1)

    def forward(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip = self.clip_embeddings(videos)
        mean = clip[:, :self.dim]
        return self.shape_head(mean), self.colour_head(mean), self.direction_head(clip)


def _augment(videos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Real clips as generated ones may look: most on a random background colour, all with gaussian noise (std up
    to 0.3) and a brightness shift (up to +-0.1)."""
    n = videos.shape[0]
    background = (videos == BACKGROUND).all(dim=2, keepdim=True)
    colour = -1 + 1.6 * torch.rand(n, 1, 3, 1, 1, generator=generator)
    keep = torch.rand(n, 1, 1, 1, 1, generator=generator) < 0.2
    videos = torch.where(background & ~keep, colour, videos)
    std = 0.3 * torch.rand(n, 1, 1, 1, 1, generator=generator)
    shift = 0.2 * torch.rand(n, 1, 1, 1, 1, generator=generator) - 0.1
    return videos + shift + std * torch.randn(videos.shape, generator=generator)


def train_classifier(dataset: MovingShapes, steps: int = 300, batch_size: int = 64, seed: int = 0,
                     device: torch.device | str = "cpu", period: int = 1) -> ClipClassifier:
    """A ClipClassifier trained on fresh real clips every step (cross-entropy summed over the three heads), in eval
    mode. Seeded on its own generators: the global RNG is left as it was."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = ClipClassifier(period=period).to(device)
    optimiser = torch.optim.Adam(classifier.parameters(), lr=2e-3)
    classifier.train()
    for _ in range(steps):
        clips = dataset.sample(batch_size, generator)
        videos, labels = _augment(clips.videos, generator).to(device), clips.labels.to(device)
        logits = classifier(videos)
        loss = sum(F.cross_entropy(logit, labels[:, i]) for i, logit in enumerate(logits))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return classifier.eval()


def _device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def prompt_accuracy(classifier: nn.Module, videos: torch.Tensor, labels: torch.Tensor,
                    batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Percent of clips whose shape, colour and direction the classifier reads as the prompt's; "mean" of the three,
    "all" the clips with all three right."""
    device = _device(classifier)
    correct = []
    for start in range(0, videos.shape[0], batch_size):
        logits = classifier(videos[start:start + batch_size].to(device, torch.float32))
        predicted = torch.stack([logit.argmax(dim=-1) for logit in logits], dim=1).cpu()
        correct.append(predicted == labels[start:start + batch_size].cpu())
    hits = torch.cat(correct).float()
    per_attribute = (100 * hits.mean(dim=0)).tolist()
    result = dict(zip(("shape", "colour", "direction"), per_attribute))
    result["mean"] = sum(per_attribute) / 3
    result["all"] = 100 * hits.all(dim=1).float().mean().item()
    return result


@torch.no_grad()
def temporal_consistency(classifier: ClipClassifier, videos: torch.Tensor, batch_size: int = EVAL_BATCH) -> float:
    """100 x the mean cosine similarity of the embeddings of consecutive frames, over all clips."""
    if videos.shape[1] < 2:
        raise ValueError("temporal consistency needs clips of at least 2 frames")
    device = _device(classifier)
    total, count = 0.0, 0
    for start in range(0, videos.shape[0], batch_size):
        e = classifier.frame_embeddings(videos[start:start + batch_size].to(device, torch.float32))
        similarity = F.cosine_similarity(e[:, 1:], e[:, :-1], dim=-1)
        total, count = total + similarity.sum().item(), count + similarity.numel()
    return 100 * total / count


@torch.no_grad()
def clip_embeddings(classifier: ClipClassifier, videos: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    device = _device(classifier)
    return torch.cat([classifier.clip_embeddings(videos[start:start + batch_size].to(device, torch.float32)).cpu()
                      for start in range(0, videos.shape[0], batch_size)])


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance of Gaussians fitted to two sets of rows [N, D] (the FID/FVD formula):
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2). Biased upwards for small N: compare sets of the same size."""
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr (S_a S_b)^1/2 is the sum of the square roots of the eigenvalues of S_a^1/2 S_b S_a^1/2 (symmetric, PSD).
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)

"""The clip classifier and the numbers read with it: it learns shape, colour and direction from real clips, is at
chance on noise, and the accuracy and temporal-consistency scores are the stated percentages."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from animatelcm.training.proof.evaluation import (ClipClassifier, clip_embeddings, frechet_distance, prompt_accuracy,
                                                 temporal_consistency, train_classifier)
from animatelcm.training.shapes import MovingShapes

DATASET = MovingShapes(frames=8, size=16)
CHANCE = (100 / 3 + 100 / 3 + 100 / 4) / 3


@pytest.fixture(scope="module")
def classifier() -> ClipClassifier:
    return train_classifier(DATASET, steps=400, seed=0)


@pytest.fixture(scope="module")
def clips():
    return DATASET.sample(512, torch.Generator().manual_seed(1234))  # not the training generator's clips


def test_a_briefly_trained_classifier_reads_fresh_real_clips(classifier, clips):
    accuracy = prompt_accuracy(classifier, clips.videos, clips.labels)
    assert accuracy["mean"] > 90 and accuracy["direction"] > 90, accuracy
    assert min(accuracy["shape"], accuracy["colour"], accuracy["direction"]) > 80, accuracy


def test_it_reads_clips_whose_background_colour_is_wrong(classifier, clips):
    background = (clips.videos == -1).all(dim=2, keepdim=True)
    tinted = torch.where(background, torch.tensor([0.6, -0.2, 0.6]).view(1, 1, 3, 1, 1), clips.videos)
    assert prompt_accuracy(classifier, tinted, clips.labels)["mean"] > 85


def test_a_cast_that_changes_from_frame_to_frame_is_taken_out_frame_by_frame(classifier, clips):
    casts = torch.rand(1, 8, 3, 1, 1, generator=torch.Generator().manual_seed(3)) - 0.5  # one per frame
    assert torch.allclose(classifier.frame_embeddings(clips.videos + casts), classifier.frame_embeddings(clips.videos),
                          atol=1e-4)


def test_on_noise_it_is_near_chance(classifier, clips):
    noise = 2 * torch.rand(clips.videos.shape, generator=torch.Generator().manual_seed(5)) - 1
    accuracy = prompt_accuracy(classifier, noise, clips.labels)
    assert abs(accuracy["mean"] - CHANCE) < 8, accuracy
    assert accuracy["all"] < 10, accuracy


def test_training_is_in_eval_mode_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    model = train_classifier(MovingShapes(frames=2, size=8), steps=2, batch_size=4)
    assert not model.training and torch.equal(torch.random.get_rng_state(), state)


class ReadsItsAnswers(nn.Module):
    """Stub classifier: predicts the classes written in channels 0, 1, 2 of pixel (0, 0) of the first frame."""

    def forward(self, videos):
        answers = videos[:, 0, :, 0, 0].long()
        return tuple(F.one_hot(answers[:, i], n).float() for i, n in enumerate((3, 3, 4)))


def test_prompt_accuracy_is_the_percentage_right_per_attribute_and_for_all_three():
    labels = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 2, 2], [0, 1, 3], [1, 2, 3]])
    guesses = torch.tensor([[0, 0, 0], [1, 1, 2], [0, 2, 2], [0, 0, 3], [2, 2, 3]])
    videos = torch.zeros(5, 2, 3, 4, 4)
    videos[:, 0, :, 0, 0] = guesses.float()
    accuracy = prompt_accuracy(ReadsItsAnswers(), videos, labels, batch_size=2)  # batches of 2, 2 and 1
    assert accuracy == pytest.approx({"shape": 60, "colour": 80, "direction": 80, "mean": 220 / 3, "all": 20})


def test_temporal_consistency_is_100_for_a_still_clip_and_lower_for_unrelated_frames(classifier, clips):
    still = clips.videos[:, :1].expand_as(clips.videos)
    assert temporal_consistency(classifier, still) == pytest.approx(100, abs=1e-4)
    frames = clips.videos.reshape(-1, *clips.videos.shape[2:])
    order = torch.randperm(frames.shape[0], generator=torch.Generator().manual_seed(0))
    shuffled = frames[order].reshape(clips.videos.shape)  # each frame from an unrelated clip
    real = temporal_consistency(classifier, clips.videos, batch_size=100)
    assert real > temporal_consistency(classifier, shuffled) + 5
    noise = torch.randn(8, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert temporal_consistency(classifier, noise) < 100


def test_temporal_consistency_needs_two_frames(classifier, clips):
    with pytest.raises(ValueError):
        temporal_consistency(classifier, clips.videos[:, :1])


def test_with_a_period_it_reads_through_a_cast_that_repeats_every_period_pixels(classifier, clips):
    """A model that folds 2x2 pixels into channels casts each of the four positions its own colour."""
    cast = torch.tensor([[0.5, -0.3], [0.0, 0.4]]).repeat(8, 8)  # [16, 16], period 2
    cast = torch.stack([cast, -cast, cast.flip(0)])[None, None]  # a different grid per channel
    grid = clips.videos + cast
    per_position = ClipClassifier(period=2)
    per_position.load_state_dict(classifier.state_dict())
    assert torch.allclose(per_position.background(grid), per_position.background(clips.videos) + cast, atol=1e-6)
    assert torch.allclose(per_position.frame_embeddings(grid), classifier.frame_embeddings(clips.videos), atol=1e-4)
    assert prompt_accuracy(per_position, grid, clips.labels) == prompt_accuracy(classifier, clips.videos, clips.labels)
    assert prompt_accuracy(classifier, grid, clips.labels)["mean"] < 85  # the per-channel background does not
    odd = clips.videos[..., :15, :15]
    assert torch.equal(per_position.background(odd), classifier.background(odd))  # 15 is not a multiple of 2


def test_frechet_distance_matches_scipys_matrix_square_root():
    from scipy.linalg import sqrtm

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=generator, dtype=torch.float64) @ torch.randn(6, 6, generator=generator,
                                                                                      dtype=torch.float64)
    b = 0.5 * torch.randn(150, 6, generator=generator, dtype=torch.float64) + 1.0
    mu_a, mu_b, s_a, s_b = a.mean(0).numpy(), b.mean(0).numpy(), np.cov(a.numpy().T), np.cov(b.numpy().T)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * sqrtm(s_a @ s_b).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + 2) == pytest.approx(4 * 6, rel=1e-6)  # a shift of 2 in each of 6 dimensions


def test_noise_is_far_from_real_clips_and_real_clips_are_near(classifier, clips):
    reference = clip_embeddings(classifier, clips.videos[:256])
    fresh = clip_embeddings(classifier, clips.videos[256:])
    noise = 2 * torch.rand(256, 8, 3, 16, 16, generator=torch.Generator().manual_seed(6)) - 1
    assert fresh.shape == (256, 2 * classifier.dim)
    assert frechet_distance(fresh, reference) * 10 < frechet_distance(clip_embeddings(classifier, noise), reference)
    mean = clip_embeddings(classifier, clips.videos[:4])[:, :classifier.dim]  # the embedding the heads read
    assert torch.allclose(classifier(clips.videos[:4])[0], classifier.shape_head(mean))

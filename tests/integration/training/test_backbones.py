"""The tiny backbone's model space: pixels in [0, 1] folded patch x patch into channels, and back, losslessly."""

import pytest
import torch

from animatelcm.training.backbones import load_backbone, save_tiny_backbone
from animatelcm.training.shapes import MovingShapes

CPU = torch.device("cpu")


@pytest.mark.parametrize("patch", [1, 2])
def test_clips_round_trip_through_the_model_space(patch):
    backbone = load_backbone("tiny", None, CPU, 16, patch)
    clips = MovingShapes(frames=3, size=16).sample(2, torch.Generator().manual_seed(0)).videos
    latent = backbone.encode_video(clips)
    assert latent.shape == (2, 3, 3 * patch * patch, 16 // patch, 16 // patch)
    assert (backbone.channels, backbone.downscale) == (3 * patch * patch, patch)
    torch.testing.assert_close(backbone.decode_video(latent), clips)
    # Black is zero: a clip of a small shape on black is close to zero-mean, as the noise it is sampled from.
    assert latent.min() == 0 and latent.mean() < 0.2


def test_a_patch_2_model_is_a_12_channel_unet_at_half_the_size():
    backbone = load_backbone("tiny", None, CPU, 32, 2)
    out = backbone.unet(torch.randn(2, 12, 16, 16), torch.tensor([10.0, 900.0]),
                        context=backbone.encode_text(["a red circle moving left", ""]))
    assert out.shape == (2, 12, 16, 16)


def test_a_base_read_with_another_patch_is_refused(tmp_path):
    save_tiny_backbone(load_backbone("tiny", None, CPU, 16, 2), tmp_path / "base.safetensors")
    with pytest.raises(ValueError, match="trained with model.patch = 2, this run sets 1"):
        load_backbone("tiny", str(tmp_path / "base.safetensors"), CPU, 16, 1)
    assert load_backbone("tiny", str(tmp_path / "base.safetensors"), CPU, 16, 2).channels == 12


def test_a_size_the_patch_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="multiple of model.patch"):
        load_backbone("tiny", None, CPU, 15, 2)

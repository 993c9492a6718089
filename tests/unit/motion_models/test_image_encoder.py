"""The AnimateLCM-I2V image encoder against an independent reference written from docs/reference.md
section 4, and its place in the motion model: loaded and checked with the rest of an I2V file.

The reference (tests/fixtures/reference_i2v.py) runs each frame on its own in float64 on the raw state dict, with
explicit convolutions, replicate padding and 2x2 averages. The fixture weights are all non-zero (conv_in and block2,
zero-initialised in training, included), so every path contributes.
"""

import math

import pytest
import torch
from torch import nn

from animatelcm.motion_models.checkpoint import MotionModelFormatError, load_motion_model, read_state_dict
from animatelcm.motion_models.image_encoder import ImageEncoder
from animatelcm.motion_models.motion_module import MotionModel
from animatelcm.devkit import motion_modules as mm
from animatelcm.tests.fixtures.reference_i2v import reference_image_encoder
from animatelcm.devkit.weights import save

TOLERANCE = 1e-4  # float32 model against the float64 reference
I2V_NAME = mm.OFFICIAL_NAMES["animatelcm_i2v"]
POSITIONS = [0, 1, 5, 15]


@pytest.fixture(scope="module")
def tiny_i2v():
    """The tiny I2V state dict and the image encoder loaded from it, through the ordinary loader."""
    sd = mm.motion_module_state_dict("animatelcm_i2v", mm.TINY_WIDTH)
    return sd, load_motion_model(sd, I2V_NAME).model.image_encoder


def image_latent(batch=1, height=8, width=8, seed=0):
    return torch.randn(batch, 4, height, width, generator=torch.Generator().manual_seed(seed))


def encode(encoder, latent, positions, motion_scale):
    with torch.no_grad():
        return encoder(latent, torch.tensor(positions), motion_scale)


@pytest.mark.parametrize("height, width", [(8, 8), (9, 7)])
@pytest.mark.parametrize("latents", ["shared", "per_frame"])
@pytest.mark.parametrize("motion_scale", [0.8, 0.0])
def test_features_match_the_reference(tiny_i2v, height, width, latents, motion_scale):
    sd, encoder = tiny_i2v
    latent = image_latent(1 if latents == "shared" else len(POSITIONS), height, width)
    features = encode(encoder, latent, POSITIONS, motion_scale)
    expected = reference_image_encoder(sd, latent, POSITIONS, motion_scale)
    assert len(features) == len(expected) == 4
    for level, (out, ref) in enumerate(zip(features, expected)):
        # the size of the UNet's hidden states at that level: each stride-2 conv rounds up
        assert out.shape == (len(POSITIONS), mm.TINY_WIDTH[level], math.ceil(height / 2 ** level),
                             math.ceil(width / 2 ** level))
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert (out.double() - ref).abs().max() <= TOLERANCE, level


def test_unsorted_positions_pick_each_frames_encoding(tiny_i2v):
    sd, encoder = tiny_i2v
    latent, positions = image_latent(), [7, 0, 63, 3]
    features = encode(encoder, latent, positions, 0.8)
    for out, ref in zip(features, reference_image_encoder(sd, latent, positions, 0.8)):
        assert (out.double() - ref).abs().max() <= TOLERANCE


def test_motion_scale_zero_gives_every_frame_the_same_features(tiny_i2v):
    _, encoder = tiny_i2v
    latent = image_latent(height=9, width=7)
    still = encode(encoder, latent, POSITIONS, 0.0)
    moving = encode(encoder, latent, POSITIONS, 0.8)
    for level in range(4):
        assert all(torch.equal(still[level][n], still[level][0]) for n in range(len(POSITIONS)))
        assert (moving[level][1:] - moving[level][0]).abs().amax(dim=(1, 2, 3)).min() > 1e-3, level


def test_latent_batch_and_positions_are_checked(tiny_i2v):
    _, encoder = tiny_i2v
    with pytest.raises(ValueError, match=r"batch of 2: expected 1 or one per frame \(4\)"):
        encode(encoder, image_latent(batch=2), POSITIONS, 0.8)
    with pytest.raises(ValueError, match=r"positions must lie in 0\.\.63 .* found 0\.\.64"):
        encode(encoder, image_latent(), [0, 64], 0.8)
    with pytest.raises(ValueError, match=r"found -1\.\.2"):
        encode(encoder, image_latent(), [-1, 2], 0.8)


class RecordingOps:
    """Stands in for a ComfyUI ops class: same constructor arguments, records dtype and device."""
    made = []

    class Conv2d(nn.Conv2d):
        def __init__(self, *args, **kwargs):
            RecordingOps.made.append((kwargs["dtype"], kwargs["device"]))
            super().__init__(*args, **kwargs)


def test_operations_and_dtype_are_used(tiny_i2v):
    sd, _ = tiny_i2v
    RecordingOps.made.clear()
    encoder = ImageEncoder(mm.TINY_WIDTH, operations=RecordingOps, dtype=torch.float64, device="cpu")
    encoder.load_state_dict({k.removeprefix("img_encoder."): v for k, v in sd.items() if k.startswith("img_encoder.")})
    assert RecordingOps.made == [(torch.float64, "cpu")] * (1 + 8 * 2 + 2)  # conv_in, block1/2 each, 2 in_conv
    assert not any(type(m) is nn.Conv2d for m in encoder.modules())
    latent = image_latent(height=9, width=7).double()
    features = encode(encoder, latent, POSITIONS, 0.8)
    for out, ref in zip(features, reference_image_encoder(sd, latent, POSITIONS, 0.8)):
        assert out.dtype == torch.float64 and (out - ref).abs().max() <= 1e-10


def test_full_width_model_has_the_released_layout():
    model = MotionModel(mm.FULL_WIDTH, image_encoder=True, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == mm.motion_module_layout("animatelcm_i2v", mm.FULL_WIDTH)
    assert {k.split(".")[2] for k in shapes if ".in_conv." in k} == {"2", "4"}
    # the adapter's parameter count (docs/reference.md section 4); the temporal modules are unchanged
    assert round(sum(p.numel() for p in model.image_encoder.parameters()) / 1e6, 1) == 76.8
    assert len(model.in_unet_order()) == 21
    assert MotionModel(mm.TINY_WIDTH, device="meta").image_encoder is None


def test_full_width_i2v_file_loads_with_its_image_encoder():
    path = mm.motion_module_file("animatelcm_i2v", mm.FULL_WIDTH)  # fp16 safetensors, cached
    state_dict = read_state_dict(path)
    loaded = load_motion_model(state_dict, path.name, dtype=torch.float16)
    assert loaded.format.kind == "animatelcm_i2v" and loaded.format.has_image_encoder
    encoder = loaded.model.image_encoder
    assert isinstance(encoder, ImageEncoder) and encoder.width == mm.FULL_WIDTH
    weights = encoder.state_dict()
    stored = {k.removeprefix("img_encoder."): v for k, v in state_dict.items() if k.startswith("img_encoder.")}
    assert weights.keys() == stored.keys()
    assert all(torch.equal(weights[k], v) for k, v in stored.items())
    assert [type(m).__name__ for _, m in loaded.model.in_unet_order()] == ["TemporalTransformer"] * 21


@pytest.mark.parametrize("key", ["img_encoder.conv_in.weight", "img_encoder.body.2.in_conv.weight",
                                 "img_encoder.body.7.block2.bias"])
@pytest.mark.parametrize("damage", ["removed", "mis-shaped"])
def test_broken_i2v_file_is_refused_naming_the_file_and_key(tmp_path, key, damage):
    state_dict = mm.motion_module_state_dict("animatelcm_i2v", mm.TINY_WIDTH)
    expected_shape = list(state_dict[key].shape)
    if damage == "removed":
        del state_dict[key]
        fragments = ["1 missing keys", key]
    else:
        state_dict[key] = torch.zeros(3, *expected_shape[1:])
        fragments = ["1 keys with the wrong shape", f"{key} expected {expected_shape} found [3"]
    path = tmp_path / I2V_NAME
    save(state_dict, path)
    with pytest.raises(MotionModelFormatError) as error:
        load_motion_model(read_state_dict(path), path.name)
    message = str(error.value)
    assert message.startswith(f"{I2V_NAME}: not a valid animatelcm_i2v motion module"), message
    assert all(fragment in message for fragment in fragments), message


def test_an_unexpected_image_encoder_key_is_refused():
    state_dict = mm.motion_module_state_dict("animatelcm_i2v", mm.TINY_WIDTH)
    state_dict["img_encoder.body.6.in_conv.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(MotionModelFormatError, match=r"1 unexpected keys \(img_encoder\.body\.6\.in_conv\.weight\)"):
        load_motion_model(state_dict, I2V_NAME)

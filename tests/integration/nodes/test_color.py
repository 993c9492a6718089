"""ALCM_ColorMatch as ComfyUI sees it: its schema, an IMAGE out like the IMAGE in, and the empty-batch error."""

import pytest
import torch

from comfy_api.latest import io

from animatelcm.nodes.color import ColorMatch
from animatelcm.video.color import match_color


def test_schema_declares_the_node_id_inputs_and_an_image_output():
    schema = ColorMatch.GET_SCHEMA()
    assert (schema.node_id, schema.display_name, schema.category) == ("ALCM_ColorMatch", "AnimateLCM Color Match",
                                                                      "AnimateLCM")
    assert [(i.id, i.get_io_type()) for i in schema.inputs] == [("images", "IMAGE"), ("reference", "IMAGE"),
                                                                 ("strength", "FLOAT")]
    assert all(i.tooltip for i in schema.inputs)
    strength = schema.inputs[2]
    assert (strength.default, strength.min, strength.max) == (1.0, 0.0, 1.0)
    assert [o.get_io_type() for o in schema.outputs] == ["IMAGE"]
    required = ColorMatch.GET_NODE_INFO_V1()["input"]["required"]
    assert list(required) == ["images", "reference", "strength"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_execute_returns_the_matched_frames_in_the_input_shape_and_dtype(dtype):
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(5, 24, 32, 3, generator=generator) * 0.5 + 0.2).to(dtype)
    reference = torch.rand(1, 40, 20, 3, generator=generator)  # a LoadImage-style batch of one, another size
    output = ColorMatch.execute(images, reference, 1.0)
    assert isinstance(output, io.NodeOutput)
    [result] = output.args
    assert result.shape == images.shape and result.dtype == dtype
    assert torch.equal(result, match_color(images, reference, 1.0))
    assert not torch.equal(result, images)
    assert torch.equal(ColorMatch.execute(images, reference, 0.0).args[0], images)


def test_an_empty_batch_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"ALCM_ColorMatch: `images` is an empty batch.*connect the decoded frames"):
        ColorMatch.execute(torch.zeros(0, 8, 8, 3), torch.rand(1, 8, 8, 3), 1.0)
    with pytest.raises(ValueError, match=r"ALCM_ColorMatch: `reference` is an empty batch.*connect the source image"):
        ColorMatch.execute(torch.rand(2, 8, 8, 3), torch.zeros(0, 8, 8, 3), 1.0)

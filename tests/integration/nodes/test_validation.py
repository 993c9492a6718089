"""Every number a node's validate_inputs receives is range-checked by the node itself (ComfyUI skips its own min/max
check for those inputs), at validation and, for linked values, when the node runs."""

import inspect

import pytest

from animatelcm.nodes.context import ContextOptions
from animatelcm.nodes.extension import AnimateLCMExtension
from animatelcm.nodes.image_to_video import ImageToVideo


def _numbers_validate_inputs_receives():
    import asyncio

    cases = []
    for node in asyncio.run(AnimateLCMExtension().get_node_list()):
        if "validate_inputs" not in node.__dict__:
            continue
        received = inspect.signature(node.validate_inputs).parameters
        for spec in node.define_schema().inputs:
            if spec.id in received and getattr(spec, "min", None) is not None:
                cases.append(pytest.param(node, spec, id=f"{node.define_schema().node_id}.{spec.id}"))
    return cases


CASES = _numbers_validate_inputs_receives()


def test_the_inputs_in_the_gap_are_the_ones_expected():
    assert {case.id for case in CASES} == {
        "ALCM_ContextOptions.context_length", "ALCM_ContextOptions.context_overlap",
        "ALCM_ImageToVideo.width", "ALCM_ImageToVideo.height",
        "ALCM_ApplyVideoControlNet.start_percent", "ALCM_ApplyVideoControlNet.end_percent",
        "ALCM_ApplySparseCtrl.start_percent", "ALCM_ApplySparseCtrl.end_percent",
        "ALCM_ApplyMotionModel.motion_scale", "ALCM_ApplyMotionModel.start_percent",
        "ALCM_ApplyMotionModel.end_percent", "ALCM_ValueSchedule.frame_count"}


@pytest.mark.parametrize("node, spec", CASES)
def test_a_value_outside_the_declared_range_is_refused_at_validation(node, spec):
    received = inspect.signature(node.validate_inputs).parameters
    defaults = {s.id: s.default for s in node.define_schema().inputs if s.id in received}
    assert node.validate_inputs(**defaults) is True
    step = 1 if isinstance(spec.min, int) else 0.5
    for value in (spec.min - step, spec.max + step):
        message = node.validate_inputs(**{**defaults, spec.id: value})
        assert f"{spec.id} is {value}, outside its range {spec.min} to {spec.max}" in message
    linked = {name: None for name in defaults}  # ComfyUI passes None for linked inputs at validation
    assert node.validate_inputs(**linked) is True


def test_linked_values_are_refused_when_the_node_runs_before_any_work():
    with pytest.raises(ValueError, match="context_length is 0, outside its range 2 to 64"):
        ContextOptions.execute(None, 0, 0, 1, "uniform", "pyramid")
    with pytest.raises(ValueError, match="context_stride is 9, outside its range 1 to 8"):
        ContextOptions.execute(None, 16, 4, 9, "uniform", "pyramid")
    with pytest.raises(ValueError, match="context_overlap \\(16\\) must be smaller than context_length"):
        ContextOptions.execute(None, 16, 16, 1, "uniform", "pyramid")
    with pytest.raises(ValueError, match="frames is 0, outside its range 1 to 64"):
        ImageToVideo.execute(None, None, None, 0, 512, 512, 0.8, 0.014)

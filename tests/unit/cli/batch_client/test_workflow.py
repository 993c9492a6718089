"""The batch client's workflow editing: overrides into a copy, API-format checks, and finding the prompt, the seed and
any input by name."""

import json

import pytest

from animatelcm.cli.batch_client.jobs import build_jobs
from animatelcm.cli.batch_client.workflow import (PROMPT_INPUT, SEED_INPUTS, UsageError, apply_overrides,
                                                  check_api_format, detect_prompt_target, detect_seed_target,
                                                  inputs_named, resolve_target, single_input)
from animatelcm.devkit.workflows import WORKFLOWS


def test_overrides_go_into_a_copy(t2v):
    before = json.dumps(t2v)
    result = apply_overrides(t2v, {("7", "width"): 64, ("8", "seed"): 5})
    assert result["7"]["inputs"]["width"] == 64 and result["8"]["inputs"]["seed"] == 5
    assert json.dumps(t2v) == before

@pytest.mark.parametrize("target, message", [
    (("99", "width"), "no node '99'"),
    (("7", "widht"), r"node 7 \(EmptyLatentImage\) has no input 'widht' \(its inputs: width, height, batch_size\)"),
])
def test_overrides_of_a_missing_node_or_input_are_rejected(t2v, target, message):
    with pytest.raises(UsageError, match=message):
        apply_overrides(t2v, {target: 1})
    with pytest.raises(UsageError, match=message):
        build_jobs(t2v, [], [], [], {target: 1}, None, None)
    with pytest.raises(UsageError, match=message):
        build_jobs(t2v, [], [], [{target: 1}], {}, None, None)

def test_ui_format_is_rejected_with_a_hint_to_export_the_api_format():
    ui = json.loads((WORKFLOWS / "animatelcm_text_to_video.json").read_text())
    with pytest.raises(UsageError, match=r"UI-format.*Export \(API\)"):
        check_api_format(ui)
    for not_api in ([], {}, {"1": {"inputs": {}}}, {"1": "x"}):
        with pytest.raises(UsageError, match="API-format"):
            check_api_format(not_api)

def test_the_text_to_video_workflow_has_its_prompt_and_seed_detected(t2v):
    assert detect_prompt_target(t2v) == ("5", "text")  # the positive encoder, not the negative one ("6")
    assert detect_seed_target(t2v) == ("8", "seed")

def test_prompt_detection_follows_conditioning_nodes_but_only_the_positive_branch(t2v):
    t2v["20"] = {"class_type": "ControlNetApplyAdvanced",
                 "inputs": {"positive": ["21", 0], "negative": ["6", 0], "control_net": ["22", 0], "strength": 1.0}}
    t2v["21"] = {"class_type": "ConditioningCombine",
                 "inputs": {"conditioning_1": ["5", 0], "conditioning_2": ["5", 0]}}
    t2v["8"]["inputs"]["positive"] = ["20", 0]
    assert detect_prompt_target(t2v) == ("5", "text")
    t2v["21"]["inputs"]["conditioning_2"] = ["6", 0]  # two encoders on the positive side: ambiguous
    with pytest.raises(UsageError, match="found 2: 5, 6.*--prompt-node"):
        detect_prompt_target(t2v)

def test_ambiguous_or_missing_seed_asks_for_seed_node(t2v):
    t2v["12"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}}
    with pytest.raises(UsageError, match="found 8/seed, 12/noise_seed.*--seed-node"):
        detect_seed_target(t2v)
    assert resolve_target(t2v, "12", "--seed-node", SEED_INPUTS, detect_seed_target) == ("12", "noise_seed")
    assert resolve_target(t2v, "8/seed", "--seed-node", SEED_INPUTS, detect_seed_target) == ("8", "seed")
    del t2v["12"], t2v["8"]
    with pytest.raises(UsageError, match="found none"):
        detect_seed_target(t2v)

def test_prompt_and_seed_overrides_must_exist(t2v):
    with pytest.raises(UsageError, match="--prompt-node: the workflow has no node '42'"):
        resolve_target(t2v, "42", "--prompt-node", (PROMPT_INPUT,), detect_prompt_target)
    with pytest.raises(UsageError, match="--seed-node: node 7 .* has no input 'seed'"):
        resolve_target(t2v, "7", "--seed-node", SEED_INPUTS, detect_seed_target)


def test_inputs_are_found_by_name_and_node_class_never_through_a_link(t2v):
    assert inputs_named(t2v, "text") == [("5", "text"), ("6", "text")]
    assert inputs_named(t2v, "width", "EmptyLatentImage") == [("7", "width")]
    assert inputs_named(t2v, "model") == []  # every model input is a link
    assert single_input(t2v, "steps") == ("8", "steps")
    assert single_input(t2v, "ckpt_name", "CheckpointLoaderSimple") == ("1", "ckpt_name")
    with pytest.raises(UsageError, match=r"'text' input to set \(found 5/text, 6/text\)"):
        single_input(t2v, "text")
    with pytest.raises(UsageError, match=r"'width' input of a KSampler node to set \(found none\)"):
        single_input(t2v, "width", "KSampler")

"""Soak: many prompts of the shipped workflows (at test size) on one server, mixed with bad ones, and an interrupted
prompt queued again.

The size comes from the environment: ALCM_SOAK_PROMPTS (default 12) prompts cycling over ALCM_SOAK_WORKFLOWS (names
of shipped workflows, comma-separated, or `all`; default three quick ones), every fourth one bad. `scripts/soak.py`
runs it at full size (50 prompts over every shipped workflow) and prints the figures."""

import json
import os

import pytest

from animatelcm.devkit.server import PromptError
from animatelcm.devkit.workflows import WORKFLOWS, at_test_size, strip_meta, ui_workflows

from .conftest import I2V_SIZE, NOT_A_MOTION_MODULE, SIZE

PROMPTS = int(os.environ.get("ALCM_SOAK_PROMPTS", "12"))
CHOSEN = os.environ.get("ALCM_SOAK_WORKFLOWS", "animatelcm_text_to_video,animatelcm_custom_sampling,"
                                               "animatelcm_video_to_video")
NAMES = [p.stem for p in ui_workflows()] if CHOSEN == "all" else CHOSEN.split(",")


def workflow(name: str) -> dict:
    return at_test_size(strip_meta(json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())), SIZE, I2V_SIZE)


def bad(kind: int) -> tuple[str, dict, str]:
    """(what is wrong, the prompt, a text its error must contain): a missing file, an impossible value, a wrong
    model family (fails while running)."""
    prompt = workflow("animatelcm_text_to_video")
    if kind == 0:
        prompt["1"]["inputs"]["ckpt_name"] = "missing.safetensors"
        return "missing file", prompt, "missing.safetensors"
    if kind == 1:
        prompt["7"]["inputs"]["width"] = 3
        return "invalid value", prompt, "width"
    prompt["3"]["inputs"]["model_name"] = NOT_A_MOTION_MODULE
    return "wrong model family", prompt, "this is a LoRA"


def rss_mib(server) -> float:
    status = open(f"/proc/{server.process.pid}/status").read()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def plan() -> list[tuple[str, str | None]]:
    """(kind, workflow name) in order: the workflows in turn, every fourth prompt a bad one."""
    order, good = [], 0
    while len(order) < PROMPTS:
        if len(order) % 4 == 3:
            order.append(("bad", None))
        else:
            order.append(("good", NAMES[good % len(NAMES)]))
            good += 1
    return order


def test_many_prompts_succeed_or_fail_with_their_message_and_memory_stays_flat(server):
    first_rss, runs = {}, 0
    for number, (kind, name) in enumerate(plan(), start=1):
        if kind == "bad":
            what, prompt, expected = bad(runs % 3)
            runs += 1
            with pytest.raises(PromptError) as error:
                server.run(prompt)
            assert expected in str(error.value), f"prompt {number} ({what}): {error.value}"
            continue
        history = server.run(workflow(name))
        assert history["status"]["status_str"] == "success", f"prompt {number} ({name})"
        first_rss.setdefault(name, rss_mib(server))
    last = rss_mib(server)
    print(f"\nsoak: {len(plan())} prompts ({runs} bad), server resident memory after the first run of each workflow "
          f"and after the last prompt (MiB):")
    for name, rss in first_rss.items():
        print(f"  {name:40} {rss:8.0f}")
    reference = max(first_rss.values())
    print(f"  {'after the last prompt':40} {last:8.0f}  ({last / reference - 1:+.1%} against the highest above)")
    assert last <= reference * 1.05


def test_a_prompt_interrupted_at_its_second_step_and_queued_again_gives_the_uninterrupted_result(server):
    prompt = workflow("animatelcm_text_to_video")
    saver = next(node_id for node_id, node in prompt.items() if node["class_type"] == "ALCM_SaveVideo")
    prompt[saver] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "soak/frames"}}
    prompt["8"]["inputs"].update(seed=777, steps=4)

    def frames(history):
        return [server.view(i["filename"], i["subfolder"]) for i in history["outputs"][saver]["images"]]

    uninterrupted = frames(server.run(prompt))
    server.free()  # nothing cached: the repeat really samples

    def interrupt_at_second_step(event):
        if event["type"] == "progress" and event["data"].get("node") == "8" and event["data"]["value"] == 2:
            server.interrupt()

    with pytest.raises(PromptError):
        server.run(prompt, on_event=interrupt_at_second_step)
    assert server.events[-1]["type"] == "execution_interrupted"
    assert frames(server.run(prompt)) == uninterrupted

"""The batch client (cli/batch_queue.py) across three real ComfyUI servers on loopback: every job done once with the
same bytes as on one server, a server killed mid-job, a server without the motion model left out."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from animatelcm.devkit.server import ComfyServer
from animatelcm.devkit.workflows import ROOT, WORKFLOWS, strip_meta

from .conftest import MOTION_MODEL, SIZE, sd15_models

SCRIPT = ROOT / "cli" / "batch_queue.py"
FRAMES, STEPS = 4, 2


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """Text-to-video at test size, saving the frames as PNG (byte-stable, unlike H.264) for exact comparisons."""
    prompt = strip_meta(json.loads((WORKFLOWS / "api" / "animatelcm_text_to_video.json").read_text()))
    prompt["7"]["inputs"].update(width=SIZE, height=SIZE, batch_size=FRAMES)
    prompt["8"]["inputs"].update(steps=STEPS)
    saver = next(node_id for node_id, node in prompt.items() if node["class_type"] == "ALCM_SaveVideo")
    prompt[saver] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "batch/frames"}}
    path = tmp_path_factory.mktemp("workflow") / "t2v_png.json"
    path.write_text(json.dumps(prompt))
    return path


@pytest.fixture(scope="module")
def more_servers(tmp_path_factory):
    """Two more servers like the session's (the second is killed by the last test) and one without the motion model.
    Started from this thread: each server dies with the thread that started it."""
    without_motion = sd15_models()
    del without_motion["animatediff_models"][MOTION_MODEL]
    started = []
    try:
        for i, models in enumerate((sd15_models(), sd15_models(), without_motion)):
            started.append(ComfyServer(tmp_path_factory.mktemp(f"comfyui_batch{i}"), models))
        yield started
    finally:
        for server in started:
            server.stop()


def run_client(workflow, servers, *args, timeout=900):
    flags = [flag for server in servers for flag in ("--server", server.url)]
    result = subprocess.run([sys.executable, str(SCRIPT), str(workflow), *flags, "--poll-interval", "1",
                             "--retries", "1", "--retry-delay", "0.2", *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    print(result.stderr)
    return result


def executed(server) -> int:
    return server.log_path.read_text(errors="replace").count("Prompt executed in")


def files_by_seed(report: Path) -> dict[int, list[bytes]]:
    return {job["overrides"]["8/seed"]: [Path(f).read_bytes() for f in job["files"]]
            for job in json.loads(report.read_text())}


def test_jobs_spread_over_three_servers_run_once_each_with_the_bytes_of_one_server(server, more_servers, workflow,
                                                                                    tmp_path):
    three = [server, *more_servers[:2]]
    before = [executed(s) for s in three]
    report = tmp_path / "three.json"
    result = run_client(workflow, three, "--seeds", "1-6", "--out", tmp_path / "three", "--report", report)
    assert result.returncode == 0 and "6 succeeded, 0 failed" in result.stderr
    jobs = json.loads(report.read_text())
    assert {job["server"] for job in jobs} == {s.url for s in three}  # every server worked
    time.sleep(1)  # the last "Prompt executed" line reaches the log
    assert sum(executed(s) for s in three) - sum(before) == 6  # each job ran once
    single = tmp_path / "one.json"
    assert run_client(workflow, [server], "--seeds", "1-6", "--out", tmp_path / "one", "--report",
                      single).returncode == 0
    assert files_by_seed(report) == files_by_seed(single)  # byte-identical, wherever a job ran
    assert all(len(files) == FRAMES for files in files_by_seed(report).values())
    assert re.search(r"^job +prompt_id +server +status", result.stderr, re.M)  # the summary names each job's server


def test_a_server_without_the_motion_model_is_left_out_with_the_file_named(server, more_servers, workflow, tmp_path):
    lacking = more_servers[2]
    result = run_client(workflow, [server, lacking], "--seeds", "7-8", "--out", tmp_path / "out")
    assert result.returncode == 0
    assert (f"{lacking.url} left out: it cannot run this workflow: node 3 (ALCM_LoadMotionModel): model_name "
            f"'{MOTION_MODEL}' is not among its files or options") in result.stderr
    assert executed(lacking) == 0


def test_a_server_killed_mid_job_hands_its_jobs_to_the_others_and_none_runs_twice(server, more_servers, workflow,
                                                                                   tmp_path):
    other, doomed = more_servers[0], more_servers[1]
    survivors = [server, other]
    before = [executed(s) for s in survivors]
    doomed_before = executed(doomed)
    report = tmp_path / "report.json"
    client = subprocess.Popen([sys.executable, str(SCRIPT), str(workflow), "--server", server.url, "--server",
                               doomed.url, "--server", other.url, "--poll-interval", "1", "--retries", "1",
                               "--retry-delay", "0.2", "--seeds", "11-16", "--out", str(tmp_path / "out"),
                               "--report", str(report)], stderr=subprocess.PIPE, text=True)
    log = doomed.log_path
    got = log.read_text(errors="replace").count("got prompt")
    deadline = time.monotonic() + 300
    while log.read_text(errors="replace").count("got prompt") == got and time.monotonic() < deadline:
        time.sleep(0.05)
    doomed.process.kill()  # mid-job: it took a prompt and is running it
    doomed.process.wait()
    stderr = client.communicate(timeout=900)[1]
    print(stderr)
    assert client.returncode == 0 and "6 succeeded, 0 failed" in stderr
    assert f"{doomed.url} is down" in stderr
    time.sleep(1)
    finished_on_doomed = executed(doomed) - doomed_before
    assert sum(executed(s) for s in survivors) - sum(before) + finished_on_doomed == 6  # none twice
    jobs = json.loads(report.read_text())
    assert sum(job["server"] == doomed.url for job in jobs) == finished_on_doomed

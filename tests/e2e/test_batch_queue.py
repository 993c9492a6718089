"""The batch queue client (cli/batch_queue.py) as a real subprocess against the real server: a batch of ten with one
invalid job, a job that fails while running, and a run through a proxy that loses the answer to a POST /prompt and
cuts the websocket mid-run."""

import asyncio
import copy
import csv
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import av

from animatelcm.devkit.videos import decoded_frames
from animatelcm.devkit.workflows import ROOT, WORKFLOWS, strip_meta

from .conftest import NOT_A_MOTION_MODULE, SIZE

SCRIPT = ROOT / "cli" / "batch_queue.py"
T2V = WORKFLOWS / "api" / "animatelcm_text_to_video.json"
FRAMES, STEPS = 4, 2  # few frames and steps: each job takes some seconds on CPU


def run_client(server_url, *args, timeout=600):
    result = subprocess.run([sys.executable, str(SCRIPT), str(T2V), "--server", server_url, "--poll-interval", "1",
                             *map(str, args)], capture_output=True, text=True, timeout=timeout)
    print(result.stderr)  # shown by pytest when the test fails
    return result


def log_count(server, text):
    return server.log_path.read_text(errors="replace").count(text)


def wait_log_count(server, text, expected, timeout=10):
    """The server log is written by another process: give it a moment to catch up before counting."""
    deadline = time.monotonic() + timeout
    while log_count(server, text) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return log_count(server, text)


def assert_downloaded(server, job):
    """Each file is a byte copy of what the server saved, and the video among them has the requested frames."""
    assert job["files"] and len(job["files"]) == len(job["server_files"])
    videos = 0
    for local, remote in zip(job["files"], job["server_files"]):
        saved = server.output_dir / remote["subfolder"] / remote["filename"]
        assert Path(local).read_bytes() == saved.read_bytes()
        try:
            frames = decoded_frames(local)
        except (av.error.FFmpegError, ValueError, IndexError):
            continue  # not a video (a still image or metadata file next to it)
        assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)
        videos += 1
    assert videos >= 1, job


def test_a_batch_of_ten_with_one_invalid_job_downloads_nine_videos_and_exits_1(server, tmp_path):
    jobs_csv = tmp_path / "jobs.csv"
    with open(jobs_csv, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["7/width", "7/height", "7/batch_size", "8/seed", "8/steps", "5/text"])
        for row in range(10):
            width = 3 if row == 6 else SIZE  # below EmptyLatentImage's minimum of 16: rejected on validation
            writer.writerow([width, SIZE, FRAMES, 100 + row, STEPS, f"a red panda, take {row}"])
    history_before = set(server.get("/history"))
    posted_before, executed_before = log_count(server, "got prompt"), log_count(server, "Prompt executed in")
    out, report = tmp_path / "out", tmp_path / "report.json"

    started = time.monotonic()
    result = run_client(server.url, "--csv", jobs_csv, "--out", out, "--report", report)
    print(f"10 jobs in {time.monotonic() - started:.0f} s")

    assert result.returncode == 1
    jobs = json.loads(report.read_text())
    ok = [job for job in jobs if job["status"] == "ok"]
    [failed] = [job for job in jobs if job["status"] != "ok"]
    assert len(ok) == 9 and failed["job"] == 7
    for job in ok:
        assert_downloaded(server, job)
    downloaded = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(downloaded) == sum(len(job["files"]) for job in ok)
    assert result.stdout.splitlines() == [path for job in ok for path in job["files"]]  # stdout: just the paths
    # The error names the node, its class, the input and the limit, in the report and in the summary on stderr.
    assert re.search(r"node 7 \(EmptyLatentImage\): width: Value 3 smaller than min of 16", failed["error"])
    assert re.search(r"7/10 +\S+ +failed +rejected by the server: .*width: Value 3 smaller than min of 16",
                     result.stderr)
    assert "9 succeeded, 1 failed" in result.stderr
    assert re.search(r"\[3/10\] node 8 ALCM_KSampler: 2/2", result.stderr)  # sampler progress from the websocket

    # Server side: exactly the 9 valid prompts ran, once each; the invalid one was posted once and rejected.
    history_after = server.get("/history")
    assert set(history_after) - history_before == {job["prompt_id"] for job in ok}
    assert failed["prompt_id"] not in history_after
    assert wait_log_count(server, "Prompt executed in", executed_before + 9) == executed_before + 9
    assert log_count(server, "got prompt") == posted_before + 10
    # And it is still healthy: it answers and runs a further prompt.
    assert server.get("/system_stats")["system"]
    prompt = copy.deepcopy(strip_meta(json.loads(T2V.read_text())))
    prompt["7"]["inputs"].update(width=SIZE, height=SIZE, batch_size=FRAMES)
    prompt["8"]["inputs"].update(seed=4242, steps=STEPS)
    assert server.run(prompt)["status"]["status_str"] == "success"


def test_a_job_that_fails_while_running_reports_the_node_and_the_exception(server, tmp_path):
    report = tmp_path / "report.json"
    result = run_client(server.url, "--set", f"3/model_name={NOT_A_MOTION_MODULE}", "--set", f"7/width={SIZE}",
                        "--set", f"7/height={SIZE}", "--set", f"7/batch_size={FRAMES}", "--out", tmp_path / "out",
                        "--report", report)
    assert result.returncode == 1 and result.stdout == ""
    [job] = json.loads(report.read_text())
    assert job["status"] == "failed" and job["files"] == []
    assert re.match(rf"node 3 \(ALCM_LoadMotionModel\) raised \w+: {re.escape(NOT_A_MOTION_MODULE)}: this is a LoRA",
                    job["error"])
    assert "[1/1] FAILED: node 3 (ALCM_LoadMotionModel)" in result.stderr


class FlakyProxy:
    """A TCP proxy in front of the server (its own thread and event loop) that loses the answer to the first
    POST /prompt (the request reaches the server, the client sees the connection close) and cuts the first websocket
    once the first sampler progress event passes through it."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.dropped_posts = self.dropped_websockets = 0
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def handle(self, client_reader, client_writer):
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        connection = {"drop_answer": False, "websocket": False}
        pipes = [asyncio.ensure_future(self.requests(client_reader, upstream_writer, connection)),
                 asyncio.ensure_future(self.answers(upstream_reader, client_writer, connection))]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        for writer in (client_writer, upstream_writer):
            writer.close()

    async def requests(self, reader, writer, connection):
        while data := await reader.read(65536):
            if data.startswith(b"GET /ws"):
                connection["websocket"] = True
            if data.startswith(b"POST /prompt") and not self.dropped_posts:
                connection["drop_answer"] = True
            writer.write(data)
            await writer.drain()

    async def answers(self, reader, writer, connection):
        while data := await reader.read(65536):
            if connection["drop_answer"]:  # the server has answered, so it has the prompt: hang up instead
                self.dropped_posts += 1
                return
            if connection["websocket"] and b'"type": "progress"' in data and not self.dropped_websockets:
                self.dropped_websockets += 1
                return
            writer.write(data)
            await writer.drain()


def test_a_lost_answer_and_a_cut_websocket_neither_queue_twice_nor_stop_the_batch(server, tmp_path):
    proxy = FlakyProxy(server.port)
    history_before = set(server.get("/history"))
    posted_before, executed_before = log_count(server, "got prompt"), log_count(server, "Prompt executed in")
    report = tmp_path / "report.json"
    try:
        result = run_client(proxy.url, "--seeds", "201,202", "--set", f"7/width={SIZE}", "--set", f"7/height={SIZE}",
                            "--set", f"7/batch_size={FRAMES}", "--set", f"8/steps={STEPS}",
                            "--out", tmp_path / "out", "--report", report)
    finally:
        proxy.close()

    assert (proxy.dropped_posts, proxy.dropped_websockets) == (1, 1)
    assert result.returncode == 0
    assert re.search(r"\[1/2\] POST /prompt: \w+(Error|Disconnected).*; retrying in", result.stderr)
    assert "[1/2] the server already has prompt" in result.stderr
    assert "websocket reconnected" in result.stderr
    jobs = json.loads(report.read_text())
    assert [job["status"] for job in jobs] == ["ok", "ok"]
    for job in jobs:
        assert_downloaded(server, job)
    # One history entry per job, and the server got each POST once: the retry did not post the first job again.
    assert set(server.get("/history")) - history_before == {job["prompt_id"] for job in jobs}
    assert wait_log_count(server, "Prompt executed in", executed_before + 2) == executed_before + 2
    assert log_count(server, "got prompt") == posted_before + 2

"""cli/batch_queue.py run as a script, as users run it: from any folder, a dry run, usage errors found before any
request, an unreachable server."""

import json
import re
import subprocess
import sys

import pytest

from animatelcm.devkit.workflows import ROOT, WORKFLOWS

SCRIPT = ROOT / "cli" / "batch_queue.py"
T2V = WORKFLOWS / "api" / "animatelcm_text_to_video.json"


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_the_script_runs_from_anywhere_and_lists_the_jobs_of_a_dry_run(tmp_path):
    (tmp_path / "prompts.txt").write_text("a red panda\n\na fox\n")
    result = run_cli(T2V, "--prompts-file", "prompts.txt", "--seeds", "1-2", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['[1/4] 5/text="a red panda" 8/seed=1', '[2/4] 5/text="a red panda" 8/seed=2',
                                          '[3/4] 5/text="a fox" 8/seed=1', '[4/4] 5/text="a fox" 8/seed=2']
    assert "--prompts-file" in run_cli("--help", cwd=tmp_path).stdout


@pytest.mark.parametrize("args, message", [
    ([WORKFLOWS / "animatelcm_text_to_video.json"], "UI-format"),
    ([T2V, "--set", "99/width=3"], "no node '99'"),
    ([T2V, "--prompt", "x", "--prompt-node", "7"], "node 7 .* has no input 'text'"),
    ([T2V, "--seeds", "9-1"], "empty"),
    (["missing.json"], "cannot read the workflow"),
])
def test_usage_errors_exit_2_before_any_request(args, message, tmp_path):
    # The server URL points at a closed port: a usage error must be found before any connection is tried.
    result = run_cli(*args, "--server", "http://127.0.0.1:9", "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreachable_server_fails_every_job_after_bounded_retries_and_the_give_up_time(tmp_path):
    result = run_cli(T2V, "--seeds", "1,2", "--server", "127.0.0.1:9", "--retries", "2", "--retry-delay", "0.05",
                     "--give-up-after", "1", "--poll-interval", "0.2", "--out", tmp_path / "out", "--report",
                     tmp_path / "report.json", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("GET /object_info: ClientConnectorError") == 2  # two retries after the first attempt
    assert "http://127.0.0.1:9 is down" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [job["status"] for job in report] == ["failed", "failed"]
    assert all("every server was down for 1 s; not finished" in job["error"] for job in report)
    assert "0 succeeded, 2 failed" in result.stderr


def test_servers_from_flags_and_a_file_each_once_and_a_resume_needs_the_same_batch(tmp_path):
    servers = tmp_path / "servers.txt"
    servers.write_text("# the render boxes\nhttp://gpu1:8188\n\ngpu2:8188\n")
    result = run_cli(T2V, "--seeds", "1-3", "--server", "gpu1:8188", "--servers-file", servers, "--dry-run",
                     cwd=tmp_path)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 3
    report = tmp_path / "report.json"
    report.write_text(json.dumps([
        {"job": i, "prompt_id": f"p{i}", "status": "ok" if i == 2 else "failed", "error": None,
         "overrides": {"8/seed": i}, "server": "http://gpu1:8188", "files": [], "server_files": []}
        for i in (1, 2, 3)]))
    result = run_cli(T2V, "--seeds", "1-3", "--resume", report, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.splitlines()[1].endswith("(done: resumed)")
    result = run_cli(T2V, "--seeds", "1-4", "--resume", report, "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "is the report of another batch" in result.stderr
    result = run_cli(T2V, "--per-server", "0", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "--per-server must be 1 or more" in result.stderr

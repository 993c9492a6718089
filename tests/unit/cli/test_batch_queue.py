"""The batch queue client's pure parts: parsing, job lists, overrides, detection of the prompt and seed inputs."""

import json
import re
import subprocess
import sys

import pytest

from animatelcm.cli import batch_queue as bq
from animatelcm.devkit.workflows import ROOT, WORKFLOWS

SCRIPT = ROOT / "cli" / "batch_queue.py"
T2V = WORKFLOWS / "api" / "animatelcm_text_to_video.json"


@pytest.fixture
def t2v():
    return json.loads(T2V.read_text())


@pytest.mark.parametrize("text, seeds", [
    ("7", [7]),
    ("1,2,5-9", [1, 2, 5, 6, 7, 8, 9]),
    (" 3 - 4 , 0 ,", [3, 4, 0]),
    ("10-10", [10]),
])
def test_seeds_are_numbers_and_inclusive_ranges(text, seeds):
    assert bq.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-3", "1,-2", "1.5", "2-x"])
def test_bad_seeds_are_usage_errors(text):
    with pytest.raises(bq.UsageError, match="--seeds"):
        bq.parse_seeds(text)


def test_csv_cells_are_json_when_they_parse_and_text_otherwise():
    text = ('7/width,5/text,8/seed,8/denoise,4/beta_schedule,9/flag,2/lora_name\n'
            '64,a red panda,1,0.5,"""auto""",true,\n'
            '\n'
            '32,"a fox, running",2,1,"""42""",false,x.safetensors\n')
    rows = bq.parse_csv(text)
    assert rows == [
        {("7", "width"): 64, ("5", "text"): "a red panda", ("8", "seed"): 1, ("8", "denoise"): 0.5,
         ("4", "beta_schedule"): "auto", ("9", "flag"): True},  # the empty cell leaves lora_name alone
        {("7", "width"): 32, ("5", "text"): "a fox, running", ("8", "seed"): 2, ("8", "denoise"): 1,
         ("4", "beta_schedule"): "42", ("9", "flag"): False, ("2", "lora_name"): "x.safetensors"},
    ]


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("7/width\n", "no row"),
    ("width,8/seed\n1,2\n", "node-id/input-name"),
    ("7/width,7/width\n1,2\n", "twice"),
    ("7/width,8/seed\n1\n", "row 1 has 1 cells"),
])
def test_malformed_csv_is_a_usage_error(text, message):
    with pytest.raises(bq.UsageError, match=message):
        bq.parse_csv(text)


def test_set_values_and_targets():
    assert bq.parse_assignment("7/width=512") == (("7", "width"), 512)
    assert bq.parse_assignment("5/text=a=b") == (("5", "text"), "a=b")
    assert bq.parse_assignment('8/sampler=["4", 0]') == (("8", "sampler"), ["4", 0])
    for bad in ("7/width", "width=3", "/width=3", "7/=3"):
        with pytest.raises(bq.UsageError):
            bq.parse_assignment(bad)


def test_overrides_go_into_a_copy(t2v):
    before = json.dumps(t2v)
    result = bq.apply_overrides(t2v, {("7", "width"): 64, ("8", "seed"): 5})
    assert result["7"]["inputs"]["width"] == 64 and result["8"]["inputs"]["seed"] == 5
    assert json.dumps(t2v) == before


@pytest.mark.parametrize("target, message", [
    (("99", "width"), "no node '99'"),
    (("7", "widht"), r"node 7 \(EmptyLatentImage\) has no input 'widht' \(its inputs: width, height, batch_size\)"),
])
def test_overrides_of_a_missing_node_or_input_are_rejected(t2v, target, message):
    with pytest.raises(bq.UsageError, match=message):
        bq.apply_overrides(t2v, {target: 1})
    with pytest.raises(bq.UsageError, match=message):
        bq.build_jobs(t2v, [], [], [], {target: 1}, None, None)
    with pytest.raises(bq.UsageError, match=message):
        bq.build_jobs(t2v, [], [], [{target: 1}], {}, None, None)


def test_ui_format_is_rejected_with_a_hint_to_export_the_api_format():
    ui = json.loads((WORKFLOWS / "animatelcm_text_to_video.json").read_text())
    with pytest.raises(bq.UsageError, match=r"UI-format.*Export \(API\)"):
        bq.check_api_format(ui)
    for not_api in ([], {}, {"1": {"inputs": {}}}, {"1": "x"}):
        with pytest.raises(bq.UsageError, match="API-format"):
            bq.check_api_format(not_api)


def test_the_text_to_video_workflow_has_its_prompt_and_seed_detected(t2v):
    assert bq.detect_prompt_target(t2v) == ("5", "text")  # the positive encoder, not the negative one ("6")
    assert bq.detect_seed_target(t2v) == ("8", "seed")


def test_prompt_detection_follows_conditioning_nodes_but_only_the_positive_branch(t2v):
    t2v["20"] = {"class_type": "ControlNetApplyAdvanced",
                 "inputs": {"positive": ["21", 0], "negative": ["6", 0], "control_net": ["22", 0], "strength": 1.0}}
    t2v["21"] = {"class_type": "ConditioningCombine",
                 "inputs": {"conditioning_1": ["5", 0], "conditioning_2": ["5", 0]}}
    t2v["8"]["inputs"]["positive"] = ["20", 0]
    assert bq.detect_prompt_target(t2v) == ("5", "text")
    t2v["21"]["inputs"]["conditioning_2"] = ["6", 0]  # two encoders on the positive side: ambiguous
    with pytest.raises(bq.UsageError, match="found 2: 5, 6.*--prompt-node"):
        bq.detect_prompt_target(t2v)


def test_ambiguous_or_missing_seed_asks_for_seed_node(t2v):
    t2v["12"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}}
    with pytest.raises(bq.UsageError, match="found 8/seed, 12/noise_seed.*--seed-node"):
        bq.detect_seed_target(t2v)
    assert bq.resolve_target(t2v, "12", "--seed-node", bq.SEED_INPUTS, bq.detect_seed_target) == ("12", "noise_seed")
    assert bq.resolve_target(t2v, "8/seed", "--seed-node", bq.SEED_INPUTS, bq.detect_seed_target) == ("8", "seed")
    del t2v["12"], t2v["8"]
    with pytest.raises(bq.UsageError, match="found none"):
        bq.detect_seed_target(t2v)


def test_prompt_and_seed_overrides_must_exist(t2v):
    with pytest.raises(bq.UsageError, match="--prompt-node: the workflow has no node '42'"):
        bq.resolve_target(t2v, "42", "--prompt-node", (bq.PROMPT_INPUT,), bq.detect_prompt_target)
    with pytest.raises(bq.UsageError, match="--seed-node: node 7 .* has no input 'seed'"):
        bq.resolve_target(t2v, "7", "--seed-node", bq.SEED_INPUTS, bq.detect_seed_target)


def test_jobs_are_the_product_of_rows_prompts_and_seeds_with_later_overrides_winning(t2v):
    rows = [{("7", "width"): 64}, {("7", "width"): 32, ("8", "seed"): 99}]
    jobs = bq.build_jobs(t2v, ["a", "b"], [1, 2, 3], rows, {("7", "width"): 128, ("7", "height"): 64},
                         ("5", "text"), ("8", "seed"))
    assert len(jobs) == 12 and [job.index for job in jobs] == list(range(1, 13)) and jobs[0].total == 12
    assert [(j.workflow["5"]["inputs"]["text"], j.workflow["8"]["inputs"]["seed"]) for j in jobs[:6]] == [
        ("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]
    assert all(j.workflow["7"]["inputs"]["height"] == 64 for j in jobs)  # --set on every job
    assert {j.workflow["7"]["inputs"]["width"] for j in jobs[:6]} == {64}  # the row beats --set
    assert jobs[6].workflow["8"]["inputs"]["seed"] == 1  # the seed beats the row
    assert len({job.prompt_id for job in jobs}) == 12
    assert t2v["7"]["inputs"]["width"] == 512
    [single] = bq.build_jobs(t2v, [], [], [], {}, None, None)
    assert single.workflow == t2v and single.label == "(workflow as is)"


def test_rejection_text_names_the_node_the_input_and_the_limit():
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                      "details": "", "extra_info": {}},
            "node_errors": {"7": {"errors": [{"type": "value_smaller_than_min", "message": "Value 3 smaller than min "
                                              "of 16", "details": "width", "extra_info": {}}],
                                  "dependent_outputs": ["11"], "class_type": "EmptyLatentImage"}}}
    assert bq.rejection_text(body) == ("Prompt outputs failed validation | node 7 (EmptyLatentImage): "
                                       "width: Value 3 smaller than min of 16")
    assert bq.rejection_text({"error": {"message": "No prompt provided", "details": "No prompt provided"},
                              "node_errors": {}}) == "No prompt provided: No prompt provided"


def test_execution_errors_name_the_node_and_the_exception():
    entry = {"status": {"status_str": "error", "completed": False, "messages": [
        ["execution_start", {"prompt_id": "p"}],
        ["execution_error", {"prompt_id": "p", "node_id": "8", "node_type": "ALCM_KSampler",
                             "exception_type": "/x/custom_nodes/pack.samplers.SamplerError",
                             "exception_message": "out of memory\n"}]]}}
    assert bq.execution_error_text(entry) == "node 8 (ALCM_KSampler) raised SamplerError: out of memory"


def test_output_files_are_every_saved_file_whatever_the_node_or_key():
    entry = {"outputs": {
        "11": {"images": [{"filename": "v_00001_.mp4", "subfolder": "AnimateLCM", "type": "output"}],
               "animated": [True]},
        "12": {"gifs": [{"filename": "g.gif", "subfolder": "", "type": "output", "format": "image/gif"}]},
        "13": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}]},
        "14": {"text": ["hello"]}}}
    assert bq.output_files(entry) == [
        {"filename": "v_00001_.mp4", "subfolder": "AnimateLCM", "type": "output"},
        {"filename": "g.gif", "subfolder": "", "type": "output"}]


def test_downloads_keep_the_subfolder_stay_inside_the_folder_and_never_overwrite(tmp_path):
    assert bq.local_path(tmp_path, "AnimateLCM", "v.mp4") == tmp_path / "AnimateLCM" / "v.mp4"
    assert bq.local_path(tmp_path, "../../etc", "/x/../passwd") == tmp_path / "etc" / "passwd"
    (tmp_path / "v.mp4").write_bytes(b"old")
    (tmp_path / "v_1.mp4").write_bytes(b"old")
    assert bq.local_path(tmp_path, "", "v.mp4") == tmp_path / "v_2.mp4"


def test_server_urls():
    assert bq.server_urls("http://127.0.0.1:8188/") == ("http://127.0.0.1:8188", "ws://127.0.0.1:8188/ws")
    assert bq.server_urls("gpu-box:8188") == ("http://gpu-box:8188", "ws://gpu-box:8188/ws")
    assert bq.server_urls("https://host/comfy") == ("https://host/comfy", "wss://host/comfy/ws")
    with pytest.raises(bq.UsageError):
        bq.server_urls("ftp://host")


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


def test_an_unreachable_server_fails_every_job_after_bounded_retries(tmp_path):
    result = run_cli(T2V, "--seeds", "1,2", "--server", "127.0.0.1:9", "--retries", "2", "--retry-delay", "0.05",
                     "--out", tmp_path / "out", "--report", tmp_path / "report.json", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("POST /prompt: ClientConnectorError") == 2  # two retries after the first attempt
    report = json.loads((tmp_path / "report.json").read_text())
    assert [job["status"] for job in report] == ["failed", "failed"]
    assert all("lost the connection to the server" in job["error"] for job in report)
    assert "0 succeeded, 2 failed" in result.stderr

"""The batch client's job list: seeds, CSV rows and --set values parsed, and every combination built in order."""

import pytest

from animatelcm.cli.batch_client.jobs import build_jobs, parse_assignment, parse_csv, parse_seeds
from animatelcm.cli.batch_client.workflow import UsageError


@pytest.mark.parametrize("text, seeds", [
    ("7", [7]),
    ("1,2,5-9", [1, 2, 5, 6, 7, 8, 9]),
    (" 3 - 4 , 0 ,", [3, 4, 0]),
    ("10-10", [10]),
])
def test_seeds_are_numbers_and_inclusive_ranges(text, seeds):
    assert parse_seeds(text) == seeds

@pytest.mark.parametrize("text", ["", "a", "5-3", "1,-2", "1.5", "2-x"])
def test_bad_seeds_are_usage_errors(text):
    with pytest.raises(UsageError, match="--seeds"):
        parse_seeds(text)

def test_csv_cells_are_json_when_they_parse_and_text_otherwise():
    text = ('7/width,5/text,8/seed,8/denoise,4/beta_schedule,9/flag,2/lora_name\n'
            '64,a red panda,1,0.5,"""auto""",true,\n'
            '\n'
            '32,"a fox, running",2,1,"""42""",false,x.safetensors\n')
    rows = parse_csv(text)
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
    with pytest.raises(UsageError, match=message):
        parse_csv(text)

def test_set_values_and_targets():
    assert parse_assignment("7/width=512") == (("7", "width"), 512)
    assert parse_assignment("5/text=a=b") == (("5", "text"), "a=b")
    assert parse_assignment('8/sampler=["4", 0]') == (("8", "sampler"), ["4", 0])
    for bad in ("7/width", "width=3", "/width=3", "7/=3"):
        with pytest.raises(UsageError):
            parse_assignment(bad)

def test_jobs_are_the_product_of_rows_prompts_and_seeds_with_later_overrides_winning(t2v):
    rows = [{("7", "width"): 64}, {("7", "width"): 32, ("8", "seed"): 99}]
    jobs = build_jobs(t2v, ["a", "b"], [1, 2, 3], rows, {("7", "width"): 128, ("7", "height"): 64},
                         ("5", "text"), ("8", "seed"))
    assert len(jobs) == 12 and [job.index for job in jobs] == list(range(1, 13)) and jobs[0].total == 12
    assert [(j.workflow["5"]["inputs"]["text"], j.workflow["8"]["inputs"]["seed"]) for j in jobs[:6]] == [
        ("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]
    assert all(j.workflow["7"]["inputs"]["height"] == 64 for j in jobs)  # --set on every job
    assert {j.workflow["7"]["inputs"]["width"] for j in jobs[:6]} == {64}  # the row beats --set
    assert jobs[6].workflow["8"]["inputs"]["seed"] == 1  # the seed beats the row
    assert len({job.prompt_id for job in jobs}) == 12
    assert t2v["7"]["inputs"]["width"] == 512
    [single] = build_jobs(t2v, [], [], [], {}, None, None)
    assert single.workflow == t2v and single.label == "(workflow as is)"

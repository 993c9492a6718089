"""The command line of cli/batch_queue.py: options, the job list they ask for (every usage error found before any
request), the run, the summary and the exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from .client import server_urls
from .jobs import Job, build_jobs, parse_assignment, parse_csv, parse_seeds, read_prompts_file
from .progress import Reporter
from .runner import run_jobs
from .workflow import (PROMPT_INPUT, SEED_INPUTS, UsageError, detect_prompt_target, detect_seed_target, load_workflow,
                       read_text, resolve_target)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8188"

EPILOG = """\
jobs:
  The jobs are every combination of CSV row x prompt x seed; an option not given counts as one, so
  `--prompt a --prompt b --seeds 1-3` queues 6 jobs and a CSV of 10 rows alone queues 10. Overrides apply
  in the order --set, CSV row, --prompt, seed: the later one wins on the same input. With none of them the
  workflow is queued once as it is.

where prompts and seeds go:
  The prompt text goes into the `text` input of the text encoder (CLIPTextEncode) that feeds a sampler's
  `positive` input, the seed into the one `seed` or `noise_seed` input of the workflow. When that is not
  exactly one input, name it with --prompt-node / --seed-node (NODE-ID or NODE-ID/INPUT).

values:
  Values of --set and CSV cells are read as JSON when they parse (512, 1.5, true, "quoted text",
  ["4", 0] for a link) and as plain text otherwise. An empty CSV cell keeps the workflow's value.

outputs and exit code:
  Each file a successful prompt saved (type output) is downloaded into --out, in the same subfolder as on the
  server, never over an existing file (a counter is added to the name); the paths go to stdout, progress and a
  summary to stderr. Exit code: 0 all jobs succeeded, 1 some failed, 2 usage error (nothing queued).

retries:
  A lost connection, timeout or 5xx answer is retried (--retries times, waiting --retry-delay seconds, doubled
  each time). The client chooses each prompt_id, and before posting a prompt again it asks the server
  (/queue, /history) whether that id arrived, so no job is queued twice. A prompt the server rejects (HTTP 400:
  invalid inputs) is not retried; its error is reported and the other jobs go on.

examples:
  %(prog)s t2v_api.json --prompt "a red panda" --prompt "a fox" --seeds 1-4 --out videos
  %(prog)s t2v_api.json --prompts-file prompts.txt --set 7/batch_size=16 --server http://gpu-box:8188
  %(prog)s t2v_api.json --csv jobs.csv --out videos   (jobs.csv header: 5/text,8/seed,7/width)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch_queue.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Queue a batch of jobs of one API-format ComfyUI workflow on a server, show their progress, "
                    "download their outputs, and report each job's success or error.")
    parser.add_argument("workflow", type=Path, help="the workflow in API format (Workflow > Export (API))")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"ComfyUI server URL (default {DEFAULT_SERVER})")
    jobs = parser.add_argument_group("jobs")
    jobs.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                      help="a prompt text; repeat for several")
    jobs.add_argument("--prompts-file", type=Path, metavar="FILE",
                      help="prompt texts, one per line (blank lines skipped)")
    jobs.add_argument("--seeds", metavar="LIST", help="seeds, e.g. 1,2,5-9 (ranges inclusive)")
    jobs.add_argument("--csv", type=Path, metavar="FILE",
                      help="one job per row; header columns name inputs as NODE-ID/INPUT, e.g. 7/width")
    jobs.add_argument("--set", action="append", default=[], metavar="NODE-ID/INPUT=VALUE", dest="sets",
                      help="override an input in every job; repeatable")
    jobs.add_argument("--prompt-node", metavar="NODE-ID[/INPUT]", help="where the prompt text goes (default: detected)")
    jobs.add_argument("--seed-node", metavar="NODE-ID[/INPUT]", help="where the seed goes (default: detected)")
    jobs.add_argument("--dry-run", action="store_true", help="list the jobs and exit without queuing anything")
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, default=Path("batch_output"), metavar="DIR",
                     help="folder for the downloaded outputs (default ./batch_output)")
    run.add_argument("--timeout", type=positive, metavar="SECONDS",
                     help="give up on the jobs not finished this long after the start (they stay on the server's "
                          "queue); default: wait as long as it takes")
    run.add_argument("--request-timeout", type=positive, default=60, metavar="SECONDS",
                     help="limit for connecting to the server or waiting on one of its answers (default 60)")
    run.add_argument("--retries", type=int, default=5, metavar="N",
                     help="retries of a request after a lost connection, timeout or 5xx (default 5)")
    run.add_argument("--retry-delay", type=positive, default=0.5, metavar="SECONDS",
                     help="wait before the first retry, doubled for each next one up to 10 s (default 0.5)")
    run.add_argument("--poll-interval", type=positive, default=5, metavar="SECONDS",
                     help="how often to check /queue and /history besides the websocket events (default 5)")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="show only queued / done / failed lines, not each node and sampler step")
    run.add_argument("--report", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    return parser


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def plan(args: argparse.Namespace) -> list[Job]:
    """The job list from the command line; every UsageError is raised here, before any request."""
    server_urls(args.server)
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    workflow = load_workflow(args.workflow)
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += read_prompts_file(read_text(args.prompts_file, "the prompts file"))
        if not prompts:
            raise UsageError(f"the prompts file {args.prompts_file} has no prompt")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else []
    rows = parse_csv(read_text(args.csv, "the CSV"), f"the CSV {args.csv}") if args.csv else []
    common = dict(parse_assignment(text) for text in args.sets)
    prompt_target = (resolve_target(workflow, args.prompt_node, "--prompt-node", (PROMPT_INPUT,), detect_prompt_target)
                     if prompts else None)
    seed_target = (resolve_target(workflow, args.seed_node, "--seed-node", SEED_INPUTS, detect_seed_target)
                   if seeds else None)
    return build_jobs(workflow, prompts, seeds, rows, common, prompt_target, seed_target)


def write_report(path: Path, jobs: list[Job]) -> None:
    results = [{"job": job.index, "prompt_id": job.prompt_id, "status": job.status, "error": job.error,
                "overrides": {"/".join(target): value for target, value in job.overrides.items()},
                "files": [str(p) for p in job.files], "server_files": job.server_files} for job in jobs]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reporter = Reporter(quiet=args.quiet)
    try:
        jobs = plan(args)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        for job in jobs:
            print(f"{job.tag} {job.label}")
        return EXIT_OK
    try:
        asyncio.run(run_jobs(jobs, args.server, args.out, reporter, args.retries, args.retry_delay,
                             args.request_timeout, args.poll_interval, args.timeout))
    except KeyboardInterrupt:
        reporter.line("interrupted: prompts already queued stay on the server's queue")
        for job in jobs:
            if job.status in ("pending", "queued"):
                job.status, job.error = "failed", "interrupted (Ctrl+C)"
    reporter.summary(jobs)
    if args.report:
        write_report(args.report, jobs)
    return EXIT_OK if all(job.status == "ok" for job in jobs) else EXIT_FAILED

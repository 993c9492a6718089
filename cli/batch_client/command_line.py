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

servers:
  With several --server (or --servers-file), each job goes to the least busy server that answers, at most
  --per-server at a time on each. A server lacking a node or file the workflow names is left out with the
  reason. A server that stops answering is marked down and its unfinished jobs go to the others; it is used
  again when it answers. With every server down for --give-up-after seconds, the client stops (exit 1).
  --resume REPORT queues only the jobs an earlier --report of the same batch does not list as done.

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
    servers = parser.add_argument_group("servers")
    servers.add_argument("--server", action="append", default=[], metavar="URL",
                         help=f"a ComfyUI server URL; repeat for several (default {DEFAULT_SERVER})")
    servers.add_argument("--servers-file", type=Path, metavar="FILE",
                         help="server URLs, one per line (blank lines and # comments skipped)")
    servers.add_argument("--per-server", type=int, default=1, metavar="N",
                         help="jobs queued on one server at a time (default 1: a slow server never holds work "
                              "a free one could do)")
    servers.add_argument("--give-up-after", type=positive, default=300, metavar="SECONDS",
                         help="when every server is down this long, stop and list the unfinished jobs (default 300)")
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
    run.add_argument("--resume", type=Path, metavar="REPORT",
                     help="a --report of an earlier run of the same batch: its finished jobs are not queued again")
    return parser


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def server_list(args: argparse.Namespace) -> list[str]:
    """Every server named (--server, --servers-file), each once, checked; the default one when none is."""
    named = list(args.server)
    if args.servers_file:
        named += [line.strip() for line in read_text(args.servers_file, "the servers file").splitlines()
                  if line.strip() and not line.strip().startswith("#")]
        if len(named) == len(args.server):
            raise UsageError(f"the servers file {args.servers_file} names no server")
    urls = []
    for server in named or [DEFAULT_SERVER]:
        url = server_urls(server)[0]
        if url not in urls:
            urls.append(url)
    return urls


def plan(args: argparse.Namespace) -> list[Job]:
    """The job list from the command line; every UsageError is raised here, before any request."""
    args.servers = server_list(args)
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if args.per_server < 1:
        raise UsageError("--per-server must be 1 or more")
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
    jobs = build_jobs(workflow, prompts, seeds, rows, common, prompt_target, seed_target)
    if args.resume:
        resume(jobs, read_text(args.resume, "the report to resume"), args.resume)
    return jobs


def resume(jobs: list[Job], text: str, name: Path) -> None:
    """Marks the jobs a report says finished as done (their files and server kept); the report must be of this very
    batch: the same number of jobs with the same overrides."""
    try:
        entries = json.loads(text)
        by_index = {entry["job"]: entry for entry in entries}
    except (ValueError, TypeError, KeyError):
        raise UsageError(f"{name} is not a --report of the batch client") from None
    for job in jobs:
        entry = by_index.get(job.index)
        overrides = {"/".join(target): value for target, value in job.overrides.items()}
        if len(entries) != len(jobs) or entry is None or entry.get("overrides") != overrides:
            raise UsageError(f"{name} is the report of another batch ({len(entries)} jobs; this one has {len(jobs)}, "
                             f"job {job.index}: {job.label}): give the same workflow and options")
        if entry.get("status") == "ok":
            job.status, job.prompt_id, job.server = "ok", entry["prompt_id"], entry.get("server")
            job.files = [Path(path) for path in entry.get("files", [])]
            job.server_files = entry.get("server_files", [])


def write_report(path: Path, jobs: list[Job]) -> None:
    results = [{"job": job.index, "prompt_id": job.prompt_id, "status": job.status, "error": job.error,
                "overrides": {"/".join(target): value for target, value in job.overrides.items()},
                "server": job.server, "files": [str(p) for p in job.files], "server_files": job.server_files}
               for job in jobs]
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
            print(f"{job.tag} {job.label}" + ("  (done: resumed)" if job.status == "ok" else ""))
        return EXIT_OK
    for job in jobs:
        if job.status == "ok":
            reporter.job(job, f"done in {args.resume}: not queued again")
    try:
        asyncio.run(run_jobs(jobs, args.servers, args.out, reporter, args.retries, args.retry_delay,
                             args.request_timeout, args.poll_interval, args.timeout, args.per_server,
                             args.give_up_after))
    except KeyboardInterrupt:
        reporter.line("interrupted: prompts already queued stay on the server's queue")
        for job in jobs:
            if job.status in ("pending", "queued"):
                job.status, job.error = "failed", "interrupted (Ctrl+C)"
    reporter.summary(jobs, servers=len(args.servers) > 1)
    if args.report:
        write_report(args.report, jobs)
    return EXIT_OK if all(job.status == "ok" for job in jobs) else EXIT_FAILED

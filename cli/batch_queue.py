"""Queue a batch of jobs of one API-format workflow on a ComfyUI server, follow them, and download their outputs.

Each job is the workflow with some inputs overridden: a prompt text, a seed, a row of a CSV file (columns named
`node-id/input-name`), and `--set` values shared by all jobs. Progress goes to stderr (one line per event, prefixed
by the job number), the path of every downloaded file to stdout, and a summary table to stderr at the end. The exit
code is 0 when every job succeeded, 1 when any failed, 2 for a usage error (nothing is queued then).

Queuing is idempotent: the client picks each prompt_id itself, and after a lost connection it asks the server
(/queue, /history) whether that id arrived before it posts again, so a retry never runs a job twice.

Runs from anywhere with the Python of a ComfyUI install (standard library + aiohttp, which ComfyUI depends on):

    python cli/batch_queue.py workflow_api.json --prompt "a cat" --prompt "a dog" --seeds 1-3 --out videos
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import csv
import itertools
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8188"
SEED_INPUTS = ("seed", "noise_seed")
PROMPT_INPUT = "text"
MAX_BACKOFF = 10.0

Target = tuple[str, str]  # (node id, input name) of the workflow


class UsageError(ValueError):
    """A problem with the command line, its files or the workflow: found before anything is queued (exit code 2)."""


# -- Pure part: parsing, job list, overrides (no network) -----------------------------------------------------------

def parse_value(text: str) -> Any:
    """A value from the command line or a CSV cell: JSON when it parses (numbers, true, "quoted", [lists]), else the
    text itself, so prompts need no quoting but `"42"` still gives the string 42."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_target(text: str, what: str = "input") -> Target:
    """`node-id/input-name` as a pair; the node id is the key of the node in the API-format workflow."""
    node, sep, name = text.strip().partition("/")
    if not sep or not node.strip() or not name.strip():
        raise UsageError(f"{what} {text!r} must be written node-id/input-name, e.g. 7/width")
    return node.strip(), name.strip()


def parse_assignment(text: str) -> tuple[Target, Any]:
    """`node-id/input-name=value` (the value as in parse_value)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"--set {text!r} must be written node-id/input-name=value, e.g. 7/width=512")
    return parse_target(key, "--set"), parse_value(value)


def parse_seeds(text: str) -> list[int]:
    """Seeds written as a comma-separated list of numbers and inclusive ranges: `1,2,5-9`."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            low, high = int(first), int(last if sep else first)
        except ValueError:
            raise UsageError(f"--seeds: {part!r} is not a seed or a range like 5-9 (seeds are integers >= 0)") from None
        if low > high:
            raise UsageError(f"--seeds: the range {part!r} is empty (write the smaller seed first)")
        seeds.extend(range(low, high + 1))
    if not seeds:
        raise UsageError(f"--seeds {text!r} names no seed")
    return seeds


def parse_csv(text: str, name: str = "CSV") -> list[dict[Target, Any]]:
    """One override dict per data row. The header names the inputs (`node-id/input-name`); an empty cell leaves that
    input as the workflow has it (write "" for an empty string); blank lines are skipped."""
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not rows:
        raise UsageError(f"{name} is empty: it needs a header of node-id/input-name columns and one row per job")
    header = [parse_target(column, f"{name} column") for column in rows[0]]
    if len(set(header)) != len(header):
        raise UsageError(f"{name}: a column appears twice in the header")
    jobs = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"{name} data row {line - 1} has {len(row)} cells, the header {len(header)}")
        jobs.append({target: parse_value(cell) for target, cell in zip(header, row) if cell.strip()})
    if not jobs:
        raise UsageError(f"{name} has a header but no row: one row per job")
    return jobs


def read_prompts_file(text: str) -> list[str]:
    """One prompt per non-blank line, taken literally (no JSON parsing: a prompt is always text)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_api_format(workflow: Any, name: str = "workflow") -> None:
    """The server's /prompt takes only the API format; the UI format (what Save writes) has nodes and links."""
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise UsageError(f"{name} is a UI-format workflow (it has 'nodes' and 'links'); the server needs the API "
                         "format: in ComfyUI use Workflow > Export (API) and pass that file")
    if not isinstance(workflow, dict) or not workflow:
        raise UsageError(f"{name} is not an API-format workflow (a JSON object of node-id: {{class_type, inputs}})")
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs"), dict):
            raise UsageError(f"{name}: node {node_id!r} has no class_type and inputs: not an API-format workflow")


def check_target(workflow: dict, target: Target, what: str) -> None:
    """Reject an override of a node or input the workflow lacks: the server would ignore it silently (input) or fail
    the job late (node), and a typo would go unnoticed across a whole batch."""
    node_id, name = target
    if node_id not in workflow:
        raise UsageError(f"{what}: the workflow has no node {node_id!r} (its nodes: {', '.join(workflow)})")
    inputs = workflow[node_id]["inputs"]
    if name not in inputs:
        raise UsageError(f"{what}: node {node_id} ({workflow[node_id]['class_type']}) has no input {name!r} "
                         f"(its inputs: {', '.join(inputs)})")


def apply_overrides(workflow: dict, overrides: dict[Target, Any]) -> dict:
    """A deep copy of the workflow with the given inputs replaced; the original stays untouched for the next job."""
    result = copy.deepcopy(workflow)
    for target, value in overrides.items():
        check_target(result, target, f"override {'/'.join(target)}")
        result[target[0]]["inputs"][target[1]] = value
    return result


def is_link(value: Any) -> bool:
    """API format writes a connection as [source node id, output index]."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _text_nodes_upstream(workflow: dict, node_id: str, seen: set[str]) -> set[str]:
    """Nodes with a literal `text` input reached from a conditioning input, following `positive` only when a node
    has one (ControlNet-style nodes also take the negative) and `conditioning*` inputs otherwise (combine nodes)."""
    if node_id in seen or node_id not in workflow:
        return set()
    seen.add(node_id)
    inputs = workflow[node_id]["inputs"]
    if isinstance(inputs.get(PROMPT_INPUT), str):
        return {node_id}
    if is_link(inputs.get("positive")):
        links = [inputs["positive"]]
    else:
        links = [value for name, value in inputs.items() if name.startswith("conditioning") and is_link(value)]
    return set().union(*(_text_nodes_upstream(workflow, link[0], seen) for link in links))


def detect_prompt_target(workflow: dict) -> Target:
    """The text input of the text encoder feeding the samplers' `positive` input; an error when there is none or more
    than one, since guessing would put the prompts in the wrong place."""
    found = set()
    for node in workflow.values():
        if is_link(node["inputs"].get("positive")):
            found |= _text_nodes_upstream(workflow, node["inputs"]["positive"][0], set())
    if len(found) != 1:
        where = f"found {len(found)}: {', '.join(sorted(found))}" if found else "found none"
        raise UsageError(f"cannot tell where the prompt text goes (looked for the text encoder on a sampler's "
                         f"positive input, {where}); name it with --prompt-node NODE-ID[/INPUT]")
    return found.pop(), PROMPT_INPUT


def detect_seed_target(workflow: dict) -> Target:
    """The one literal `seed`/`noise_seed` input (samplers, RandomNoise); an error when there is none or several."""
    found = [(node_id, name) for node_id, node in workflow.items() for name in SEED_INPUTS
             if isinstance(node["inputs"].get(name), int) and not isinstance(node["inputs"][name], bool)]
    if len(found) != 1:
        where = f"found {', '.join('/'.join(t) for t in found)}" if found else "found none"
        raise UsageError(f"cannot tell where the seed goes (looked for a seed or noise_seed input, {where}); "
                         "name it with --seed-node NODE-ID[/INPUT]")
    return found[0]


def resolve_target(workflow: dict, spec: str | None, what: str, default_inputs: tuple[str, ...], detect) -> Target:
    """The override target for prompts or seeds: `--prompt-node`/`--seed-node` as given (the input name may be left
    out when the node has one of the usual ones), else detected from the graph."""
    if spec is None:
        return detect(workflow)
    if "/" in spec:
        target = parse_target(spec, what)
    else:
        node = workflow.get(spec.strip())
        names = [name for name in default_inputs if node is not None and name in node["inputs"]]
        target = (spec.strip(), names[0] if names else default_inputs[0])
    check_target(workflow, target, what)
    return target


@dataclass
class Job:
    """One prompt to queue: its overrides, and what became of it."""

    index: int
    total: int
    overrides: dict[Target, Any]  # only the per-job ones, for the label
    workflow: dict
    prompt_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "pending"  # pending, queued, ok, failed
    error: str | None = None
    files: list[Path] = field(default_factory=list)
    server_files: list[dict] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"[{self.index}/{self.total}]"

    @property
    def label(self) -> str:
        parts = []
        for (node, name), value in self.overrides.items():
            shown = value if not isinstance(value, str) else (value if len(value) <= 40 else value[:37] + "...")
            parts.append(f"{node}/{name}={json.dumps(shown)}")
        return " ".join(parts) or "(workflow as is)"


def build_jobs(workflow: dict, prompts: list[str], seeds: list[int], rows: list[dict[Target, Any]],
               common: dict[Target, Any], prompt_target: Target | None, seed_target: Target | None) -> list[Job]:
    """Every combination of CSV row x prompt x seed (each axis that is not given counts as one), seeds varying
    fastest. Overrides apply in the order --set, CSV row, prompt, seed, so a later one wins on the same input. All
    targets are checked here, before anything is queued."""
    for target in common:
        check_target(workflow, target, f"--set {'/'.join(target)}")
    for target in {target for row in rows for target in row}:
        check_target(workflow, target, f"CSV column {'/'.join(target)}")
    combos = list(itertools.product(rows or [{}], prompts or [None], seeds or [None]))
    jobs = []
    for index, (row, prompt, seed) in enumerate(combos, start=1):
        own = dict(row)
        if prompt is not None:
            own[prompt_target] = prompt
        if seed is not None:
            own[seed_target] = seed
        jobs.append(Job(index, len(combos), own, apply_overrides(workflow, {**common, **own})))
    return jobs


def output_files(history_entry: dict) -> list[dict]:
    """The files a finished prompt saved: every list of {filename, subfolder, type} dicts in its outputs, whatever the
    node or key (images, gifs, audio...), type output only (temp previews are not results), each once."""
    files, seen = [], set()
    for node_id in sorted(history_entry.get("outputs", {}), key=str):
        for value in history_entry["outputs"][node_id].values():
            for item in value if isinstance(value, list) else []:
                if not isinstance(item, dict) or "filename" not in item or item.get("type", "output") != "output":
                    continue
                key = (item.get("subfolder", ""), item["filename"])
                if key not in seen:
                    seen.add(key)
                    files.append({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                  "type": "output"})
    return files


def rejection_text(body: Any) -> str:
    """The error of a 400 from /prompt in one line: the message, then each failing node, its class and its errors
    (with their details, which name the input), the way the ComfyUI frontend lists them."""
    if not isinstance(body, dict):
        return str(body)
    error = body.get("error")
    parts = [error.get("message", "") if isinstance(error, dict) else str(error or "invalid prompt")]
    if isinstance(error, dict) and error.get("details") and not body.get("node_errors"):
        parts[0] += f": {error['details']}"
    for node_id, node in (body.get("node_errors") or {}).items():
        errors = "; ".join(f"{e.get('details')}: {e.get('message')}" if e.get("details") else str(e.get("message"))
                           for e in node.get("errors", []))
        parts.append(f"node {node_id} ({node.get('class_type', '?')}): {errors}")
    return " | ".join(part for part in parts if part)


def execution_error_text(history_entry: dict) -> str:
    """Why a prompt failed while running, from the messages its history keeps: the node and the exception."""
    for name, data in (history_entry.get("status") or {}).get("messages", []):
        if name == "execution_error":  # exception_type is qualified by a module path that may be a file path
            kind = str(data.get("exception_type")).rsplit(".", 1)[-1]
            return (f"node {data.get('node_id')} ({data.get('node_type')}) raised "
                    f"{kind}: {str(data.get('exception_message', '')).strip()}")
        if name == "execution_interrupted":
            return f"interrupted at node {data.get('node_id')} ({data.get('node_type')})"
    return f"failed (server status {(history_entry.get('status') or {}).get('status_str')!r})"


def local_path(out_dir: Path, subfolder: str, filename: str) -> Path:
    """Where a server file goes: the same subfolder under out_dir (no absolute or `..` parts, whatever the server
    says), never over an existing file: a counter is added to the name instead."""
    parts = [p for p in Path(subfolder.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    name = Path(filename.replace("\\", "/")).name or "output"
    folder = out_dir.joinpath(*parts)
    path = folder / name
    for n in itertools.count(1):
        if not path.exists():
            return path
        path = folder / f"{Path(name).stem}_{n}{Path(name).suffix}"


def server_urls(server: str) -> tuple[str, str]:
    """The HTTP base URL and the websocket URL of a server given as host:port or URL."""
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    scheme, rest = server.split("://", 1)
    if scheme not in ("http", "https"):
        raise UsageError(f"--server {server!r}: use an http:// or https:// URL")
    return server, ("wss" if scheme == "https" else "ws") + "://" + rest + "/ws"


# -- Progress and summary (stderr) ----------------------------------------------------------------------------------

class Reporter:
    """Progress lines on stderr, one per event worth showing; downloaded paths on stdout, for scripts."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def line(self, text: str, detail: bool = False) -> None:
        if not (detail and self.quiet):
            print(text, file=self.stream, flush=True)

    def job(self, job: Job, text: str, detail: bool = False) -> None:
        self.line(f"{job.tag} {text}", detail)

    def saved(self, path: Path) -> None:
        print(path, flush=True)

    def summary(self, jobs: list[Job]) -> None:
        rows = [("job", "prompt_id", "status", "files / error")]
        for job in jobs:
            if job.status == "ok":
                detail = ", ".join(str(path) for path in job.files) or "(no output file)"
            else:
                detail = job.error or ""
            rows.append((f"{job.index}/{job.total}", job.prompt_id, job.status, detail))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        self.line("")
        for row in rows:
            self.line("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
        failed = sum(job.status != "ok" for job in jobs)
        self.line(f"{len(jobs) - failed} succeeded, {failed} failed")


# -- Network part ---------------------------------------------------------------------------------------------------

RETRYABLE = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, ConnectionError)


class ServerError(Exception):
    """A 5xx answer: the server is there but failed this request, so it is retried like a lost connection."""


class Rejected(Exception):
    """The server refused a prompt (HTTP 400 from /prompt, or another 4xx): not retried, reported for the job."""


class ServerUnavailable(Exception):
    """The server stayed unreachable through every retry, or answered a status request with an unusable error."""


class Client:
    """HTTP calls to one ComfyUI server with bounded retries and exponential backoff on retryable failures."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, client_id: str, reporter: Reporter,
                 retries: int, retry_delay: float):
        self.session, self.base_url, self.client_id = session, base_url, client_id
        self.reporter, self.retries, self.retry_delay = reporter, retries, retry_delay

    def backoff(self, attempt: int) -> float:
        return min(self.retry_delay * 2 ** (attempt - 1), MAX_BACKOFF)

    async def get_json(self, path: str, retry: bool = True) -> Any:
        """GET is idempotent: retry it on any retryable failure (unless the caller runs its own retry loop)."""
        for attempt in itertools.count():
            try:
                async with self.session.get(self.base_url + path) as response:
                    if response.status >= 500:
                        raise ServerError(f"HTTP {response.status} from GET {path}")
                    if response.status != 200:
                        raise ServerUnavailable(f"GET {path} answered HTTP {response.status}")
                    return await response.json(content_type=None)
            except (*RETRYABLE, ServerError, json.JSONDecodeError) as error:
                if not retry:
                    raise
                await self._wait_before_retry(attempt, f"GET {path}", error)

    async def _wait_before_retry(self, attempt: int, what: str, error: BaseException, job: Job | None = None) -> None:
        if attempt >= self.retries:
            raise ServerUnavailable(f"{what} failed {attempt + 1} times, last: {describe(error)}") from error
        delay = self.backoff(attempt + 1)
        self.reporter.line(f"{job.tag + ' ' if job else ''}{what}: {describe(error)}; retrying in {delay:.1f} s")
        await asyncio.sleep(delay)

    async def known_ids(self, retry: bool = True) -> set[str]:
        """Prompt ids queued or running now (index 1 of each /queue item)."""
        queue = await self.get_json("/queue", retry)
        return {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, [])}

    async def history(self, prompt_id: str, retry: bool = True) -> dict | None:
        """The prompt's history entry, written when it finished (success or error); None before that."""
        return (await self.get_json(f"/history/{prompt_id}", retry)).get(prompt_id)

    async def knows(self, prompt_id: str) -> bool:
        """Whether the server has the prompt, queued, running or finished; one try, in the caller's retry loop."""
        return prompt_id in await self.known_ids(retry=False) or await self.history(prompt_id, retry=False) is not None

    async def queue(self, job: Job) -> dict:
        """POST /prompt with the job's own prompt_id. After a failure that may have reached the server (lost
        connection, timeout, 5xx), ask the server whether it has the id before posting again: the backoff wait before
        asking gives a request still being validated time to land in the queue, so the check sees it."""
        body = {"prompt": job.workflow, "client_id": self.client_id, "prompt_id": job.prompt_id}
        for attempt in itertools.count():
            try:
                if attempt and await self.knows(job.prompt_id):
                    self.reporter.job(job, f"the server already has prompt {job.prompt_id}: not posting it again")
                    return {}
                async with self.session.post(self.base_url + "/prompt", json=body) as response:
                    if response.status >= 500:
                        raise ServerError(f"HTTP {response.status} from POST /prompt")
                    text = await response.text()
                    if response.status != 200:  # 400: invalid prompt, with the reasons as JSON
                        raise Rejected(rejection_text(parse_value(text)) or f"HTTP {response.status}")
                    answer = parse_value(text)
                    return answer if isinstance(answer, dict) else {}
            except (*RETRYABLE, ServerError) as error:
                await self._wait_before_retry(attempt, "POST /prompt", error, job)

    async def download(self, item: dict, out_dir: Path) -> Path:
        """GET /view of one output file into out_dir, retried from scratch (a partial file is removed)."""
        params = {"filename": item["filename"], "subfolder": item["subfolder"], "type": item["type"]}
        for attempt in itertools.count():
            path = local_path(out_dir, item["subfolder"], item["filename"])
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                async with self.session.get(self.base_url + "/view", params=params) as response:
                    if response.status >= 500:
                        raise ServerError(f"HTTP {response.status} from GET /view")
                    if response.status != 200:
                        raise Rejected(f"downloading {item['subfolder']}/{item['filename']}: HTTP {response.status}")
                    with open(path, "xb") as file:  # "x": never overwrite, even a file created meanwhile
                        async for chunk in response.content.iter_chunked(1 << 16):
                            file.write(chunk)
                    return path
            except (*RETRYABLE, ServerError) as error:
                path.unlink(missing_ok=True)
                await self._wait_before_retry(attempt, f"GET /view {item['filename']}", error)


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


RECONNECTED = "reconnected"


async def follow_websocket(session: aiohttp.ClientSession, ws_url: str, client_id: str, events: asyncio.Queue,
                           tried: asyncio.Event, reporter: Reporter, retry_delay: float) -> None:
    """Put each JSON event of the websocket on `events`, forever. ComfyUI sends a prompt's events only to the
    clientId that queued it, so a dropped connection is reopened with the same clientId, then RECONNECTED is put on
    `events` for the caller to look up in /history whatever finished meanwhile (those events are lost). `tried` is
    set once the first attempt has connected or failed."""
    attempt, connected_before = 0, False
    while True:
        try:
            async with session.ws_connect(ws_url, params={"clientId": client_id}, heartbeat=20) as ws:
                if connected_before:
                    reporter.line("websocket reconnected; checking /history for what finished meanwhile")
                if connected_before or attempt:
                    events.put_nowait(RECONNECTED)
                connected_before = True
                tried.set()
                attempt = 0
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        events.put_nowait(json.loads(message.data))
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        break
            error_text = "connection closed"
        except (*RETRYABLE, aiohttp.WSServerHandshakeError, ValueError) as error:
            error_text = describe(error)
        tried.set()
        attempt += 1
        delay = min(retry_delay * 2 ** (attempt - 1), MAX_BACKOFF)
        reporter.line(f"websocket: {error_text}; reconnecting in {delay:.1f} s", detail=attempt > 1)
        await asyncio.sleep(delay)


class Batch:
    """Queues the jobs, follows them to the end (websocket events, with /queue and /history as the authority), and
    downloads the outputs of each as soon as it finishes."""

    def __init__(self, client: Client, jobs: list[Job], out_dir: Path, reporter: Reporter, poll_interval: float,
                 timeout: float | None):
        self.client, self.jobs, self.out_dir, self.reporter = client, jobs, out_dir, reporter
        self.poll_interval, self.timeout = poll_interval, timeout
        self.by_id = {job.prompt_id: job for job in jobs}

    async def run(self, events: asyncio.Queue) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            for job in self.jobs:
                await self.queue(job)
            await self.follow(events, deadline)
        except ServerUnavailable as error:
            for job in self.jobs:
                if job.status == "queued":
                    self.fail(job, f"lost the connection to the server (prompt {job.prompt_id} may still run "
                                   f"there): {error}")
                elif job.status == "pending":
                    self.fail(job, f"lost the connection to the server: {error}")

    async def queue(self, job: Job) -> None:
        try:
            answer = await self.client.queue(job)
        except Rejected as error:
            self.fail(job, f"rejected by the server: {error}")
            return
        job.status = "queued"
        self.reporter.job(job, f"queued {job.prompt_id}  {job.label}")
        if answer.get("node_errors"):  # outputs that cannot run are skipped, the others run: say so
            self.reporter.job(job, f"warning: {rejection_text({'node_errors': answer['node_errors']})}")

    async def follow(self, events: asyncio.Queue, deadline: float | None) -> None:
        """Until every job has finished: show events as they come, and reconcile with the server after a reconnect
        and every poll_interval seconds, so a missed event can delay a job's end but never lose it."""
        next_poll = time.monotonic() + self.poll_interval
        while any(job.status == "queued" for job in self.jobs):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                for job in self.jobs:
                    if job.status == "queued":
                        self.fail(job, f"timed out after {self.timeout:g} s (prompt {job.prompt_id} is still "
                                       "queued or running on the server)")
                return
            wait = next_poll - now if deadline is None else min(next_poll, deadline) - now
            try:
                event = await asyncio.wait_for(events.get(), timeout=max(wait, 0.01))
            except asyncio.TimeoutError:
                event = None
            if isinstance(event, dict):
                await self.on_event(event)
            if event == RECONNECTED or time.monotonic() >= next_poll:
                await self.reconcile()
                next_poll = time.monotonic() + self.poll_interval

    async def on_event(self, event: dict) -> None:
        data = event.get("data") or {}
        job = self.by_id.get(data.get("prompt_id"))
        if job is None or job.status != "queued":
            return
        kind = event.get("type")
        if kind == "execution_start":
            self.reporter.job(job, "started", detail=True)
        elif kind == "executing" and data.get("node") is not None:
            self.reporter.job(job, f"node {data['node']} {self.class_of(job, data['node'])}", detail=True)
        elif kind == "progress":
            self.reporter.job(job, f"node {data.get('node')} {self.class_of(job, data.get('node'))}: "
                                   f"{data.get('value')}/{data.get('max')}", detail=True)
        elif kind == "executing":  # node None: the prompt is over and its history written
            await self.finish(job)

    @staticmethod
    def class_of(job: Job, node_id: Any) -> str:
        return job.workflow.get(str(node_id), {}).get("class_type", "")

    async def reconcile(self) -> None:
        """Every queued job the server no longer has in its queue has finished (its history is written under the
        same lock that takes it off the queue): look it up."""
        running = await self.client.known_ids()
        for job in self.jobs:
            if job.status == "queued" and job.prompt_id not in running:
                await self.finish(job, missing_ok=True)

    async def finish(self, job: Job, missing_ok: bool = False) -> None:
        entry = await self.client.history(job.prompt_id)
        if entry is None:
            if missing_ok:  # neither queued nor in history: posting it again could run it twice, so don't
                self.fail(job, f"the server no longer knows prompt {job.prompt_id} (restarted, or its history was "
                               "cleared); it was not queued again")
            return
        if (entry.get("status") or {}).get("status_str", "success") != "success":
            self.fail(job, execution_error_text(entry))
            return
        job.server_files = output_files(entry)
        for item in job.server_files:
            try:
                path = await self.client.download(item, self.out_dir)
            except Rejected as error:
                self.fail(job, f"ran, but {error}")
                return
            job.files.append(path)
            self.reporter.saved(path)
        job.status = "ok"
        self.reporter.job(job, f"done: {len(job.files)} file(s)")

    def fail(self, job: Job, error: str) -> None:
        job.status, job.error = "failed", error
        self.reporter.job(job, f"FAILED: {error}")


async def run_jobs(jobs: list[Job], server: str, out_dir: Path, reporter: Reporter, retries: int = 5,
                   retry_delay: float = 0.5, request_timeout: float = 60, poll_interval: float = 5,
                   timeout: float | None = None) -> list[Job]:
    """Queue and follow the jobs on the server; every job ends as ok or failed (with its error)."""
    base_url, ws_url = server_urls(server)
    client_id = uuid.uuid4().hex
    events: asyncio.Queue = asyncio.Queue()
    tried = asyncio.Event()
    http_timeout = aiohttp.ClientTimeout(total=None, sock_connect=request_timeout, sock_read=request_timeout)
    async with aiohttp.ClientSession(timeout=http_timeout) as session:
        client = Client(session, base_url, client_id, reporter, retries, retry_delay)
        listener = asyncio.create_task(
            follow_websocket(session, ws_url, client_id, events, tried, reporter, retry_delay))
        try:
            await tried.wait()  # connect first so that no event of the first job is missed (polling would catch up)
            await Batch(client, jobs, out_dir, reporter, poll_interval, timeout).run(events)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    return jobs


# -- Command line ---------------------------------------------------------------------------------------------------

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


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {what} {path}: {error}") from None


def load_workflow(path: Path) -> dict:
    try:
        workflow = json.loads(read_text(path, "the workflow"))
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"the workflow {path} is not JSON: {error}") from None
    check_api_format(workflow, f"the workflow {path}")
    return workflow


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


if __name__ == "__main__":
    sys.exit(main())

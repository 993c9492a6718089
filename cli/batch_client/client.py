"""One ComfyUI server over HTTP and its websocket: queuing a job without ever posting it twice, its history, its
output files, the server's errors in one line each, with bounded retries on lost connections. Standard library +
aiohttp."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import aiohttp

from .jobs import Job
from .progress import Reporter
from .workflow import UsageError, parse_value

MAX_BACKOFF = 10.0
RETRYABLE = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, ConnectionError)


def server_urls(server: str) -> tuple[str, str]:
    """The HTTP base URL and the websocket URL of a server given as host:port or URL."""
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    scheme, rest = server.split("://", 1)
    if scheme not in ("http", "https"):
        raise UsageError(f"--server {server!r}: use an http:// or https:// URL")
    return server, ("wss" if scheme == "https" else "ws") + "://" + rest + "/ws"


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

    async def delete_queued(self, prompt_id: str) -> None:
        """Takes a prompt off the queue if it is still waiting there (a running one is left to finish); one try."""
        try:
            async with self.session.post(self.base_url + "/queue", json={"delete": [prompt_id]}) as response:
                await response.read()
        except RETRYABLE:
            pass

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

"""Running a batch on one or many servers: each job goes to a free server, is followed to its end, and its outputs are
downloaded as soon as it finishes; a server that stops answering hands its unfinished jobs to the others."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .client import (RECONNECTED, RETRYABLE, Client, Rejected, ServerError, ServerUnavailable, execution_error_text,
                     follow_websocket, output_files, rejection_text, server_urls)
from .jobs import Job
from .progress import Reporter
from .workflow import missing_requirements


# What a single unretried request to a server that is (or was) down may raise.
CONNECTION_ERRORS = (*RETRYABLE, aiohttp.ClientError, ServerError, ValueError)


@dataclass(eq=False)
class Server:
    """One ComfyUI server and the jobs it holds."""

    url: str
    client: Client
    up: bool = True
    down_since: float | None = None
    running: list[Job] = field(default_factory=list)  # queued or running there, not finished
    # Jobs that were on it when it went down, by prompt id: if it comes back, it may still hold or have run them.
    lost: dict[str, Job] = field(default_factory=dict)
    unfetched: list[Job] = field(default_factory=list)  # finished there; their outputs wait for it to come back
    excluded: str | None = None  # why it cannot run this batch
    next_poll: float = 0.0


class TaggedEvents:
    """The `events` queue of one server's websocket listener: puts (server, event) on the batch's shared queue."""

    def __init__(self, queue: asyncio.Queue, server: Server):
        self.queue, self.server = queue, server

    def put_nowait(self, event: Any) -> None:
        self.queue.put_nowait((self.server, event))


class Batch:
    """Hands the jobs to the servers (at most `per_server` each at a time), follows them (websocket events, with
    /queue and /history as the authority) and downloads the outputs of each as soon as it finishes."""

    def __init__(self, servers: list[Server], jobs: list[Job], out_dir: Path, reporter: Reporter,
                 poll_interval: float, timeout: float | None, per_server: int = 1, give_up_after: float = 300):
        self.servers, self.jobs, self.out_dir, self.reporter = servers, jobs, out_dir, reporter
        self.poll_interval, self.timeout, self.per_server, self.give_up_after = (poll_interval, timeout, per_server,
                                                                                give_up_after)
        self.by_id = {job.prompt_id: job for job in jobs}
        self.all_down_since: float | None = None

    @property
    def usable(self) -> list[Server]:
        return [server for server in self.servers if server.excluded is None]

    def unfinished(self) -> list[Job]:
        return [job for job in self.jobs if job.status in ("pending", "queued")]

    async def run(self, events: asyncio.Queue) -> None:
        await self.check_servers()
        if not self.usable:
            reasons = "; ".join(f"{server.url}: {server.excluded}" for server in self.servers)
            for job in self.unfinished():
                self.fail(job, f"no server can run it ({reasons})")
            return
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while self.unfinished():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                for job in self.unfinished():
                    where = f" (prompt {job.prompt_id} is still queued or running on {job.server})" if job.server else ""
                    self.fail(job, f"timed out after {self.timeout:g} s{where}")
                return
            await self.dispatch()
            if self.gave_up(now):
                return
            wake = min([server.next_poll for server in self.usable] + ([deadline] if deadline else []))
            try:
                server, event = await asyncio.wait_for(events.get(), timeout=max(wake - time.monotonic(), 0.01))
            except asyncio.TimeoutError:
                server, event = None, None
            if isinstance(event, dict):
                await self.on_event(server, event)
            elif event == RECONNECTED:
                server.next_poll = 0.0  # look up what finished (or whether it is back) now
            for due in [s for s in self.usable if time.monotonic() >= s.next_poll]:
                await self.poll(due)

    async def check_servers(self) -> None:
        """Once per server: the nodes and model files the jobs need (`/object_info`); one that lacks any is left
        out with the reason, one that does not answer starts as down."""
        for server in self.servers:
            try:
                info = await server.client.get_json("/object_info")
            except ServerUnavailable as error:
                self.mark_down(server, error)
                continue
            problems = sorted({problem for job in self.jobs for problem in missing_requirements(job.workflow, info)})
            if problems:
                server.excluded = "; ".join(problems)
                self.reporter.line(f"{server.url} left out: it cannot run this workflow: {server.excluded}")

    async def dispatch(self) -> None:
        """The next pending jobs to the up servers with room, the least busy first."""
        pending = [job for job in self.jobs if job.status == "pending"]
        while pending:
            free = [s for s in self.usable if s.up and len(s.running) < self.per_server]
            if not free:
                return
            server = min(free, key=lambda s: len(s.running))
            await self.queue(server, pending.pop(0))

    async def queue(self, server: Server, job: Job) -> None:
        try:
            answer = await server.client.queue(job)
        except Rejected as error:  # the job's own fault: no other server would take it either
            self.fail(job, f"rejected by the server: {error}")
            return
        except ServerUnavailable as error:
            server.lost[job.prompt_id] = job  # it may have arrived
            self.mark_down(server, error)
            return
        job.status, job.server = "queued", server.url
        server.running.append(job)
        self.reporter.job(job, f"queued {job.prompt_id} on {server.url}  {job.label}"
                          if len(self.servers) > 1 else f"queued {job.prompt_id}  {job.label}")
        if answer.get("node_errors"):  # outputs that cannot run are skipped, the others run: say so
            self.reporter.job(job, f"warning: {rejection_text({'node_errors': answer['node_errors']})}")

    async def on_event(self, server: Server, event: dict) -> None:
        data = event.get("data") or {}
        job = self.by_id.get(data.get("prompt_id"))
        if job is None or job.status != "queued" or job.server != server.url:
            return
        kind = event.get("type")
        if kind == "execution_start":
            self.reporter.job(job, "started", detail=True)
        elif kind == "executing" and data.get("node") is not None:
            self.reporter.job(job, f"node {data['node']} {self.class_of(job, data['node'])}", detail=True)
        elif kind == "progress":
            self.reporter.progress(job, data.get("node"), self.class_of(job, data.get("node")), data.get("value"),
                                   data.get("max"))
        elif kind == "executing":  # node None: the prompt is over and its history written
            await self.finish(server, job)

    @staticmethod
    def class_of(job: Job, node_id: Any) -> str:
        return job.workflow.get(str(node_id), {}).get("class_type", "")

    async def poll(self, server: Server) -> None:
        """An up server: every job it no longer has queued has finished (its history is written under the same lock
        that takes it off the queue): look it up. A down one: is it back?"""
        server.next_poll = time.monotonic() + self.poll_interval
        if not server.up:
            await self.probe(server)
            return
        try:
            running = await server.client.known_ids()
        except ServerUnavailable as error:
            self.mark_down(server, error)
            return
        for job in list(server.running):
            if job.prompt_id not in running:
                await self.finish(server, job, missing_ok=True)

    async def probe(self, server: Server) -> None:
        """One try: if the server answers again, take it back, settle the jobs it held when it went down (a job it
        still has and nobody else runs stays there; one it finished is taken from it unless it finished elsewhere;
        one run elsewhere meanwhile is deleted from its queue), and fetch the outputs it kept."""
        try:
            running = await server.client.known_ids(retry=False)
        except (ServerUnavailable, *CONNECTION_ERRORS):
            return
        server.up, server.down_since = True, None
        self.all_down_since = None
        self.reporter.line(f"{server.url} answers again: back in use")
        lost, server.lost = server.lost, {}
        for prompt_id, job in lost.items():
            if prompt_id in running and job.status != "pending":  # run elsewhere meanwhile
                await server.client.delete_queued(prompt_id)
            elif prompt_id in running or (job.status == "pending" and await self.ran_here(server, job)):
                job.status, job.server = "queued", server.url  # still there, or finished there: it stays
                server.running.append(job)
        for job in server.unfetched:
            job.status, job.server = "queued", server.url
            server.running.append(job)
        server.unfetched = []
        for job in list(server.running):
            if job.prompt_id not in running:
                await self.finish(server, job, missing_ok=True)

    @staticmethod
    async def ran_here(server: Server, job: Job) -> bool:
        """Whether the server finished a job that was waiting to go elsewhere (one try)."""
        try:
            return await server.client.history(job.prompt_id, retry=False) is not None
        except (ServerUnavailable, *CONNECTION_ERRORS):
            return False

    def mark_down(self, server: Server, error: BaseException) -> None:
        """The server stopped answering: its unfinished jobs go back to the others (it may come back)."""
        if not server.up:
            return
        server.up, server.down_since = False, time.monotonic()
        server.next_poll = time.monotonic() + self.poll_interval
        moved = [job for job in server.running if job.status == "queued"]
        for job in moved:
            job.status, job.server = "pending", None
            server.lost[job.prompt_id] = job
        server.running = []
        others = [s for s in self.usable if s.up]
        where = "the other servers" if others else "a server once one answers"
        self.reporter.line(f"{server.url} is down ({error}); {len(moved)} unfinished job(s) go to {where}")
        if not others and self.all_down_since is None:
            self.all_down_since = time.monotonic()

    def gave_up(self, now: float) -> bool:
        """Jobs finished on a server that has been down `give_up_after` fail (they are never run again); with every
        server down that long, so does the rest."""
        for server in self.usable:
            if server.unfetched and server.down_since is not None and now - server.down_since >= self.give_up_after:
                for job in server.unfetched:
                    self.fail(job, f"finished on {server.url}, but it went down before its outputs were downloaded "
                                   f"and stayed down {self.give_up_after:g} s; it was not run again")
                server.unfetched = []
        if any(s.up for s in self.usable) or self.all_down_since is None:
            return False
        if now - self.all_down_since < self.give_up_after:
            return False
        for job in self.unfinished():
            self.fail(job, f"every server was down for {self.give_up_after:g} s; not finished")
        return True

    async def finish(self, server: Server, job: Job, missing_ok: bool = False) -> None:
        try:
            entry = await server.client.history(job.prompt_id)
        except ServerUnavailable as error:
            self.mark_down(server, error)
            return
        if entry is None:
            if missing_ok:  # neither queued nor in history: posting it again could run it twice, so don't
                self.remove(server, job)
                self.fail(job, f"{server.url} no longer knows prompt {job.prompt_id} (restarted, or its history "
                               "was cleared); it was not queued again")
            return
        self.remove(server, job)
        if (entry.get("status") or {}).get("status_str", "success") != "success":
            self.fail(job, execution_error_text(entry))
            return
        job.server_files, job.files = output_files(entry), []
        for item in job.server_files:
            try:
                path = await server.client.download(item, self.out_dir)
            except Rejected as error:
                self.fail(job, f"ran, but {error}")
                return
            except ServerUnavailable as error:  # it ran: never again elsewhere; fetch when the server is back
                for path in job.files:
                    path.unlink(missing_ok=True)
                job.files, job.status = [], "queued"
                server.unfetched.append(job)
                self.mark_down(server, error)
                return
            job.files.append(path)
            self.reporter.saved(path)
        job.status = "ok"
        self.reporter.job(job, f"done on {server.url}: {len(job.files)} file(s)" if len(self.servers) > 1
                          else f"done: {len(job.files)} file(s)")

    @staticmethod
    def remove(server: Server, job: Job) -> None:
        if job in server.running:
            server.running.remove(job)

    def fail(self, job: Job, error: str) -> None:
        job.status, job.error = "failed", error
        self.reporter.job(job, f"FAILED: {error}")


async def run_jobs(jobs: list[Job], servers: list[str] | str, out_dir: Path, reporter: Reporter, retries: int = 5,
                   retry_delay: float = 0.5, request_timeout: float = 60, poll_interval: float = 5,
                   timeout: float | None = None, per_server: int = 1, give_up_after: float = 300) -> list[Job]:
    """Queue and follow the jobs on the servers; every job ends as ok or failed (with its error). Jobs already ok
    (from a resumed report) are left alone."""
    urls = [servers] if isinstance(servers, str) else list(servers)
    client_id = uuid.uuid4().hex
    events: asyncio.Queue = asyncio.Queue()
    http_timeout = aiohttp.ClientTimeout(total=None, sock_connect=request_timeout, sock_read=request_timeout)
    async with aiohttp.ClientSession(timeout=http_timeout) as session:
        pool, listeners, tried = [], [], []
        for url in urls:
            base_url, ws_url = server_urls(url)
            server = Server(base_url, Client(session, base_url, client_id, reporter, retries, retry_delay))
            pool.append(server)
            tried.append(asyncio.Event())
            listeners.append(asyncio.create_task(follow_websocket(session, ws_url, client_id,
                                                                  TaggedEvents(events, server), tried[-1], reporter,
                                                                  retry_delay)))
        try:
            await asyncio.gather(*(event.wait() for event in tried))  # no event of a first job missed
            await Batch(pool, [job for job in jobs if job.status != "ok"], out_dir, reporter, poll_interval, timeout,
                        per_server, give_up_after).run(events)
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
    return jobs

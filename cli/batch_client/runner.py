"""Running a batch on a server: queue every job, follow each to its end, download its outputs as soon as it
finishes, and leave every job ok or failed with its error."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from .client import (RECONNECTED, Client, Rejected, ServerUnavailable, execution_error_text, follow_websocket,
                     output_files, rejection_text, server_urls)
from .jobs import Job
from .progress import Reporter


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
            self.reporter.progress(job, data.get("node"), self.class_of(job, data.get("node")), data.get("value"),
                                   data.get("max"))
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

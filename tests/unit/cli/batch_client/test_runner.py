"""The scheduler across servers, against small in-process stand-ins of ComfyUI's HTTP API (aiohttp): work spread over
every server, a server dying mid-job, one without a model file, a rejected job, every server down, resuming.

The stand-in keeps what the client relies on: /prompt queues under the client's prompt_id (400 for an invalid
workflow), one job runs at a time, /queue lists what waits or runs, /history/{id} is written when a job ends,
/view serves its file, /ws sends `executing` with node None at the end, /object_info lists the node types and files.
The real servers are in tests/e2e/test_batch_queue.py."""

import asyncio
import io
import json
from aiohttp import web

from animatelcm.cli.batch_client.jobs import build_jobs
from animatelcm.cli.batch_client.progress import Reporter
from animatelcm.cli.batch_client.runner import run_jobs

WORKFLOW = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "2": {"class_type": "ALCM_LoadMotionModel", "inputs": {"model_name": "motion.ckpt"}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 0, "model": ["1", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
}


class FakeComfy:
    """One stand-in server: `seconds` per job; `files` the model files it has."""

    def __init__(self, name: str, seconds: float = 0.15, files=("sd15.safetensors", "motion.ckpt")):
        self.name, self.seconds, self.files = name, seconds, list(files)
        self.queue, self.history, self.completed, self.posted = [], {}, [], []
        self.sockets, self.running = set(), None
        self.runner = self.site = self.worker = None
        self.port = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/object_info", self.object_info)
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/queue", self.get_queue)
        app.router.add_post("/queue", self.delete)
        app.router.add_get("/history/{prompt_id}", self.get_history)
        app.router.add_get("/view", self.view)
        app.router.add_get("/ws", self.ws)
        return app

    async def start(self, port: int = 0) -> None:
        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", port or self.port or 0)
        await self.site.start()
        self.port = self.site._server.sockets[0].getsockname()[1]
        self.worker = asyncio.create_task(self.work())

    async def kill(self) -> None:
        """As a killed process: the job it runs never ends, its queue and history are gone, nothing answers."""
        self.worker.cancel()
        for socket in list(self.sockets):
            await socket.close()
        await self.runner.cleanup()
        self.queue, self.history, self.running = [], {}, None

    async def object_info(self, request):
        combo = lambda options: [options]  # noqa: E731  (old-style spec: the list of choices first)
        return web.json_response({
            "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": combo(self.files)}}},
            "ALCM_LoadMotionModel": {"input": {"required": {"model_name": combo(self.files)}}},
            "KSampler": {"input": {"required": {"seed": ["INT", {}], "model": ["MODEL"]}}},
            "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}}})

    async def prompt(self, request):
        body = await request.json()
        self.posted.append(body["prompt_id"])
        if body["prompt"]["3"]["inputs"]["seed"] < 0:
            return web.json_response({"error": {"message": "Prompt outputs failed validation"}, "node_errors": {
                "3": {"class_type": "KSampler", "errors": [{"message": "Value -1 smaller than min of 0",
                                                            "details": "seed"}]}}}, status=400)
        self.queue.append(body["prompt_id"])
        return web.json_response({"prompt_id": body["prompt_id"], "number": len(self.posted), "node_errors": {}})

    async def get_queue(self, request):
        running = [[0, self.running, {}, {}, []]] if self.running else []
        return web.json_response({"queue_running": running,
                                  "queue_pending": [[1, pid, {}, {}, []] for pid in self.queue]})

    async def delete(self, request):
        for prompt_id in (await request.json()).get("delete", []):
            if prompt_id in self.queue:
                self.queue.remove(prompt_id)
        return web.json_response({})

    async def get_history(self, request):
        prompt_id = request.match_info["prompt_id"]
        return web.json_response({prompt_id: self.history[prompt_id]} if prompt_id in self.history else {})

    async def view(self, request):
        return web.Response(body=f"{self.name}:{request.query['filename']}".encode())

    async def ws(self, request):
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.add(socket)
        async for _ in socket:
            pass
        self.sockets.discard(socket)
        return socket

    async def work(self):
        while True:
            if not self.queue:
                await asyncio.sleep(0.01)
                continue
            self.running = self.queue.pop(0)
            await asyncio.sleep(self.seconds)
            self.history[self.running] = {"status": {"status_str": "success"}, "outputs": {
                "4": {"images": [{"filename": f"{self.running}.png", "subfolder": "", "type": "output"}]}}}
            self.completed.append(self.running)
            done, self.running = self.running, None
            for socket in list(self.sockets):
                await socket.send_str(json.dumps({"type": "executing", "data": {"node": None, "prompt_id": done}}))


def batch(seeds):
    return build_jobs(WORKFLOW, [], list(seeds), [], {}, None, ("3", "seed"))


def client(jobs, servers, tmp_path, stream=None, **options):
    """The client's run of `jobs` on `servers` (a coroutine), with short retries and polls unless `options` say."""
    settings = {"retries": 1, "retry_delay": 0.05, "poll_interval": 0.2, **options}
    return run_jobs(jobs, [s.url for s in servers], tmp_path / "out", Reporter(stream=stream or io.StringIO()),
                    **settings)


async def until_running(server) -> str:
    while not server.running:
        await asyncio.sleep(0.02)
    return server.running


def ran(servers) -> list[str]:
    return [prompt_id for server in servers for prompt_id in server.completed]


async def started(*servers):
    for server in servers:
        await server.start()
    return servers


def test_jobs_spread_over_every_server_and_each_runs_once(tmp_path):
    async def scenario():
        servers = await started(FakeComfy("a"), FakeComfy("b"), FakeComfy("c"))
        jobs = batch(range(9))
        stream = io.StringIO()
        await client(jobs, servers, tmp_path, stream)
        return servers, jobs, stream.getvalue()

    servers, jobs, log = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [job.status for job in jobs] == ["ok"] * 9
    assert sorted(ran(servers)) == sorted(job.prompt_id for job in jobs)  # each exactly once
    assert all(len(server.completed) >= 2 for server in servers)  # every server worked
    for job in jobs:
        server = next(s for s in servers if job.prompt_id in s.completed)
        assert job.server == server.url and job.files[0].read_text() == f"{server.name}:{job.prompt_id}.png"
        assert f"queued {job.prompt_id} on {server.url}" in log


def test_a_server_killed_mid_job_hands_its_jobs_to_the_others_and_none_runs_twice(tmp_path):
    async def scenario():
        fast, doomed = await started(FakeComfy("fast"), FakeComfy("doomed", seconds=30))
        jobs = batch(range(4))
        task = asyncio.create_task(client(jobs, [fast, doomed], tmp_path))
        victim = await until_running(doomed)
        await doomed.kill()
        await task
        return fast, doomed, jobs, victim

    fast, doomed, jobs, victim = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [job.status for job in jobs] == ["ok"] * 4
    assert doomed.completed == [] and sorted(fast.completed) == sorted(job.prompt_id for job in jobs)
    assert next(job for job in jobs if job.prompt_id == victim).server == fast.url


def test_a_server_without_a_model_file_is_left_out_with_the_file_named(tmp_path):
    async def scenario():
        full, partial = await started(FakeComfy("full"), FakeComfy("partial", files=["sd15.safetensors"]))
        jobs = batch(range(3))
        stream = io.StringIO()
        await client(jobs, [full, partial], tmp_path, stream)
        return full, partial, jobs, stream.getvalue()

    full, partial, jobs, log = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [job.status for job in jobs] == ["ok"] * 3 and partial.posted == [] and len(full.completed) == 3
    assert (f"{partial.url} left out: it cannot run this workflow: node 2 (ALCM_LoadMotionModel): model_name "
            "'motion.ckpt' is not among its files or options") in log


def test_a_rejected_job_is_reported_once_and_not_tried_elsewhere(tmp_path):
    async def scenario():
        servers = await started(FakeComfy("a"), FakeComfy("b"))
        jobs = batch([1, -1, 2])
        await client(jobs, servers, tmp_path)
        return servers, jobs

    servers, jobs = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [job.status for job in jobs] == ["ok", "failed", "ok"]
    assert "seed: Value -1 smaller than min of 0" in jobs[1].error
    assert sum(server.posted.count(jobs[1].prompt_id) for server in servers) == 1


def test_with_every_server_down_the_client_waits_then_lists_what_is_unfinished(tmp_path):
    async def scenario():
        [only] = await started(FakeComfy("only", seconds=30))
        jobs = batch(range(2))
        task = asyncio.create_task(client(jobs, [only], tmp_path, retries=0, poll_interval=0.1, give_up_after=0.5))
        await until_running(only)
        await only.kill()
        await task
        return jobs

    jobs = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [job.status for job in jobs] == ["failed", "failed"]
    assert all("every server was down for 0.5 s; not finished" in job.error for job in jobs)


def test_a_server_that_comes_back_is_used_again(tmp_path):
    async def scenario():
        [only] = await started(FakeComfy("only", seconds=0.5))
        jobs = batch(range(3))
        task = asyncio.create_task(client(jobs, [only], tmp_path, retries=0, poll_interval=0.1, give_up_after=30))
        await until_running(only)
        await only.kill()
        await asyncio.sleep(0.5)
        only.seconds = 0.05
        await only.start()  # restarted on the same port, empty
        await task
        return only, jobs

    only, jobs = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [job.status for job in jobs] == ["ok"] * 3 and sorted(only.completed) == sorted(j.prompt_id for j in jobs)


def test_jobs_a_resumed_report_lists_as_done_are_not_queued_again(tmp_path):
    async def scenario():
        [only] = await started(FakeComfy("only"))
        jobs = batch(range(3))
        jobs[1].status, jobs[1].server = "ok", "http://earlier:8188"  # as command_line.resume marks it
        await client(jobs, [only], tmp_path)
        return only, jobs

    only, jobs = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [job.status for job in jobs] == ["ok"] * 3
    assert only.posted == [jobs[0].prompt_id, jobs[2].prompt_id] and jobs[1].server == "http://earlier:8188"


class DiesAtDownload(FakeComfy):
    """Runs its job, then dies as the client asks for the output."""

    async def view(self, request):
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.kill()))
        return web.Response(status=503)


def test_a_job_finished_on_a_server_that_dies_before_the_download_is_never_run_again(tmp_path):
    async def scenario():
        steady, dying = await started(FakeComfy("steady", seconds=0.3), DiesAtDownload("dying", seconds=0.05))
        jobs = batch(range(4))
        stream = io.StringIO()
        await client(jobs, [steady, dying], tmp_path, stream, poll_interval=0.1, give_up_after=0.5)
        return steady, dying, jobs

    steady, dying, jobs = asyncio.run(asyncio.wait_for(scenario(), 60))
    [lost] = [job for job in jobs if job.status == "failed"]
    assert lost.prompt_id in dying.posted and lost.prompt_id not in steady.posted
    assert f"finished on {dying.url}, but it went down before its outputs were downloaded" in lost.error
    assert [job.status for job in jobs if job is not lost] == ["ok"] * 3

"""Benchmark (not a test): jobs per minute of the batch client with 1, 2 and 3 ComfyUI servers, side by side.

Three real ComfyUI servers on loopback (CPU, each its own process), with the end-to-end tier's model files (SD1.5
and AnimateLCM in their real layouts at 320 channels per level, random weights), the shipped text-to-video workflow
at 32x32 px, 4 frames, 2 steps (small jobs: the client's own overhead shows), `cli/batch_queue.py` run as a user
runs it, for the same batch with 1, 2 then 3 servers. On a machine whose cores all go to one server's torch
threads, more servers only share those cores; on one GPU per server each server adds its GPU.
Run with the dev Python:  .dev/comfyui-0.33.0/venv/bin/python benchmarks/bench_batch_servers.py [--help]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling as bench  # noqa: E402  (the shared helpers: importing, machine line)

ROOT = Path(__file__).resolve().parents[1]


def models() -> dict:
    from animatelcm.devkit import motion_modules as mm
    from animatelcm.devkit.lora import lora_file
    from animatelcm.devkit.sd15_checkpoint import checkpoint_file

    thin = (1, 1, 1, 1)  # 320 channels on every level, as the end-to-end tier
    return {"checkpoints": {"v1-5-pruned-emaonly.safetensors": checkpoint_file(channel_mult=thin)},
            "loras": {"AnimateLCM_sd15_t2v_lora.safetensors": lora_file(channel_mult=thin)},
            "animatediff_models": {mm.OFFICIAL_NAMES["animatelcm_t2v"]:
                                   mm.motion_module_file("animatelcm_t2v", (320,) * 4, fmt="ckpt")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12, help="jobs per run (default 12)")
    parser.add_argument("--servers", type=int, default=3, help="the most servers (default 3)")
    opts = parser.parse_args()
    load = os.getloadavg()[0]
    bench.import_pack_and_comfyui(cpu=True)
    from animatelcm.devkit.server import ComfyServer

    workflow = json.loads((ROOT / "workflows" / "api" / "animatelcm_text_to_video.json").read_text())
    workflow["7"]["inputs"].update(width=32, height=32, batch_size=4)
    workflow["8"]["inputs"].update(steps=2)
    files = models()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t2v_small.json"
        path.write_text(json.dumps(workflow))
        servers = []  # started from this thread: each server dies with the thread that started it
        try:
            for i in range(opts.servers):
                servers.append(ComfyServer(Path(tmp) / f"server{i}", files))
            # One warm-up job per server: models loaded, first kernels run, as on a server that has been in use.
            for server in servers:
                subprocess.run([sys.executable, str(ROOT / "cli" / "batch_queue.py"), str(path), "--server",
                                server.url, "--seeds", "0", "--out", str(Path(tmp) / "warm"), "-q"], check=True,
                               capture_output=True)
            results = []
            for count in range(1, opts.servers + 1):
                flags = [flag for server in servers[:count] for flag in ("--server", server.url)]
                started = time.monotonic()
                done = subprocess.run([sys.executable, str(ROOT / "cli" / "batch_queue.py"), str(path), *flags,
                                       "--seeds", f"1-{opts.jobs}", "--poll-interval", "1", "-q",
                                       "--out", str(Path(tmp) / f"out{count}")], capture_output=True, text=True)
                seconds = time.monotonic() - started
                if done.returncode:
                    sys.exit(f"{count} server(s): the batch failed:\n{done.stderr[-3000:]}")
                results.append((count, seconds))
        finally:
            for server in servers:
                server.stop()

    print("=" * 90)
    print("Batch client across servers")
    print(f"machine : {bench.machine(load)}")
    print(f"batch   : {opts.jobs} text-to-video jobs (32x32 px, 4 frames, 2 steps), --per-server 1")
    print("-" * 90)
    print(f"{'servers':>8} {'seconds':>9} {'jobs per minute':>16} {'x one server':>13}")
    base = results[0][1]
    for count, seconds in results:
        print(f"{count:8d} {seconds:9.1f} {opts.jobs / seconds * 60:16.1f} {base / seconds:12.2f}x")
    print("-" * 90)


if __name__ == "__main__":
    main()

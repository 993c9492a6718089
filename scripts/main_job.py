"""The main job: text-to-video through ComfyUI's HTTP API, from a fresh machine to an .mp4 file.

Starts ComfyUI headless with the pack on a free loopback port, then queues the shipped text-to-video workflow
(workflows/api/animatelcm_text_to_video.json) and downloads the video it writes with the batch client's modules
(cli/batch_client/), which find the inputs to set by what they are, never by node id. It uses the real AnimateLCM
files when they are in the ComfyUI models folder (see README, "Where the model files go"), and otherwise generated
fixture models with random weights, whose video is noise: that run proves the pipeline, not the pictures.

Run it with `make run` (which builds the environment first), or
`.dev/comfyui-0.33.0/venv/bin/python scripts/main_job.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "api" / "animatelcm_text_to_video.json"
MOTION_MODEL = "AnimateLCM_sd15_t2v.ckpt"
LORA = "AnimateLCM_sd15_t2v_lora.safetensors"


def real_models(models_dir: Path, checkpoint: str) -> dict[str, dict[str, Path]] | None:
    files = {"checkpoints": {checkpoint: models_dir / "checkpoints" / checkpoint},
             "loras": {LORA: models_dir / "loras" / LORA},
             "animatediff_models": {MOTION_MODEL: models_dir / "animatediff_models" / MOTION_MODEL}}
    present = all(path.is_file() for folder in files.values() for path in folder.values())
    return files if present else None


def fixture_models(checkpoint: str) -> dict[str, dict[str, Path]]:
    from animatelcm.devkit.lora import lora_file
    from animatelcm.devkit.motion_modules import motion_module_file
    from animatelcm.devkit.sd15_checkpoint import checkpoint_file

    return {"checkpoints": {checkpoint: checkpoint_file()}, "loras": {LORA: lora_file()},
            "animatediff_models": {MOTION_MODEL: motion_module_file("animatelcm_t2v", fmt="ckpt")}}


def step_printer():
    """A batch reporter that shows the sampler's steps on stdout, as this script always has, and leaves out the
    batch's per-job lines and downloaded paths: the script says itself what it queues and where the video goes.
    Connection retries still show on stderr."""
    from animatelcm.cli.batch_client.progress import Reporter

    class StepPrinter(Reporter):
        def job(self, job, text, detail=False):
            pass

        def saved(self, path):
            pass

        def progress(self, job, node_id, class_type, value, maximum):
            print(f"  step {value}/{maximum}", flush=True)

    return StepPrinter()


def main() -> int:
    runpy.run_path(str(ROOT / "devkit" / "bootstrap.py"))["import_pack"]()  # the devkit harness and the batch client
    from animatelcm.cli.batch_client.jobs import build_jobs
    from animatelcm.cli.batch_client.runner import run_jobs
    from animatelcm.cli.batch_client.workflow import (detect_prompt_target, detect_seed_target, load_workflow,
                                                      single_input)
    from animatelcm.devkit.comfy import comfyui_path
    from animatelcm.devkit.server import ComfyServer

    workflow = load_workflow(WORKFLOW)
    checkpoint = single_input(workflow, "ckpt_name")
    prompt_text, seed = detect_prompt_target(workflow), detect_seed_target(workflow)
    latent = {name: single_input(workflow, name, "EmptyLatentImage") for name in ("width", "height", "batch_size")}
    steps = single_input(workflow, "steps")

    def default(target):
        return workflow[target[0]]["inputs"][target[1]]

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=comfyui_path() / "models",
                        help="a ComfyUI models folder holding the real files (default: the dev ComfyUI's)")
    parser.add_argument("--checkpoint", default=default(checkpoint), help="SD1.5 checkpoint file name")
    parser.add_argument("--prompt", default=default(prompt_text))
    parser.add_argument("--seed", type=int, default=default(seed))
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=None,
                        help="width and height in pixels (default: 512 with real models, 128 with fixtures)")
    parser.add_argument("--output", type=Path, default=ROOT / "output", help="folder for the video")
    args = parser.parse_args()

    models = real_models(args.models, args.checkpoint)
    real = models is not None
    if not real:
        print(f"Real AnimateLCM files not found under {args.models} ({args.checkpoint} in checkpoints, {LORA} in loras, "
              f"{MOTION_MODEL} in animatediff_models): using generated models with RANDOM weights, so the video "
              "will be noise.", flush=True)
        models = fixture_models(args.checkpoint)
    size = args.size or (512 if real else 128)

    settings = {checkpoint: args.checkpoint, latent["width"]: size, latent["height"]: size,
                latent["batch_size"]: args.frames, steps: args.steps}
    [job] = build_jobs(workflow, [args.prompt], [args.seed], [], settings, prompt_text, seed)

    with tempfile.TemporaryDirectory(prefix="animatelcm-main-job-") as base:
        print(f"Starting ComfyUI ({comfyui_path()}) with the pack ...", flush=True)
        server = ComfyServer(Path(base), models)
        try:
            print(f"Queueing {args.frames} frames at {size}x{size}, {args.steps} steps, seed {args.seed} ...", flush=True)
            asyncio.run(run_jobs([job], server.url, Path(base) / "downloaded", step_printer()))
        finally:
            server.stop()
        if job.status != "ok":
            print(f"The prompt failed:\n{job.error}", file=sys.stderr)
            return 1
        [video] = job.files
        args.output.mkdir(parents=True, exist_ok=True)
        target = next(path for n in range(1, 100_000)
                      if not (path := args.output / f"animatelcm_t2v_seed{args.seed}_{n:03d}.mp4").exists())
        shutil.copyfile(video, target)
    print(f"Video written: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

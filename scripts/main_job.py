"""The main job: text-to-video through ComfyUI's HTTP API, from a fresh machine to an .mp4 file.

Starts ComfyUI headless with the pack on a free loopback port, queues the shipped text-to-video workflow
(workflows/api/animatelcm_text_to_video.json) and copies the video it writes. It uses the real AnimateLCM files when
they are in the ComfyUI models folder (see README, "Where the model files go"), and otherwise generated fixture
models with random weights, whose video is noise: that run proves the pipeline, not the pictures.

Run it with `make run` (which builds the environment first), or
`.dev/comfyui-0.33.0/venv/bin/python scripts/main_job.py --help`.
"""

from __future__ import annotations

import argparse
import json
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


def show_progress(event: dict) -> None:
    if event["type"] == "progress":
        print(f"  step {event['data']['value']}/{event['data']['max']}", flush=True)


def main() -> int:
    runpy.run_path(str(ROOT / "devkit" / "bootstrap.py"))["import_pack"]()  # for the devkit's harness
    from animatelcm.devkit.comfy import comfyui_path
    from animatelcm.devkit.server import ComfyServer, PromptError

    prompt = json.loads(WORKFLOW.read_text())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=comfyui_path() / "models",
                        help="a ComfyUI models folder holding the real files (default: the dev ComfyUI's)")
    parser.add_argument("--checkpoint", default=prompt["1"]["inputs"]["ckpt_name"], help="SD1.5 checkpoint file name")
    parser.add_argument("--prompt", default=prompt["5"]["inputs"]["text"])
    parser.add_argument("--seed", type=int, default=prompt["8"]["inputs"]["seed"])
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

    prompt["1"]["inputs"]["ckpt_name"] = args.checkpoint
    prompt["5"]["inputs"]["text"] = args.prompt
    prompt["7"]["inputs"].update(width=size, height=size, batch_size=args.frames)
    prompt["8"]["inputs"].update(seed=args.seed, steps=args.steps)

    with tempfile.TemporaryDirectory(prefix="animatelcm-main-job-") as base:
        print(f"Starting ComfyUI ({comfyui_path()}) with the pack ...", flush=True)
        server = ComfyServer(Path(base), models)
        try:
            print(f"Queueing {args.frames} frames at {size}x{size}, {args.steps} steps, seed {args.seed} ...", flush=True)
            history = server.run(prompt, on_event=show_progress)
        except PromptError as error:
            print(f"The prompt failed:\n{error}", file=sys.stderr)
            return 1
        finally:
            server.stop()
        [video] = history["outputs"]["11"]["images"]
        args.output.mkdir(parents=True, exist_ok=True)
        target = next(path for n in range(1, 100_000)
                      if not (path := args.output / f"animatelcm_t2v_seed{args.seed}_{n:03d}.mp4").exists())
        shutil.copyfile(server.output_dir / video["subfolder"] / video["filename"], target)
    print(f"Video written: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The small-scale proof of AnimateLCM's training recipe, on the CPU: does a consistency-distilled student at 1-4 steps
match its teacher at 50, where the teacher's own few-step samplers fail?

1. A synthetic captioned dataset (training/shapes.py: coloured shapes moving in a stated direction) and a classifier
   trained on real clips of it, which reads shape, colour and direction back from a clip (prompt accuracy), and a
   temporal-consistency score from its frame embeddings (training/evaluation.py).
2. A small teacher of the SD1.5 family trained here (reduced width, pixel space, the pack's motion module): image UNet
   first, then its motion module (the video teacher), as ordinary diffusion models.
3. Stage 1 (spatial LoRA), stage 2 (motion module; LoRA in the online model only, the paper's initialisation), stage 2
   with the LoRA merged into the target too, and direct one-stage distillation with the steps of stages 1 + 2.
   On centre data (CENTRE_PLAN) their motion modules start from the teacher's, and the paper's zero start is one
   more stage-2 row.
4. One table: every model and sampler on the same noise, prompts and classifiers.

    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_distillation.py                # about 2.5 hours on 2 cores
    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_distillation.py --scale 0.05   # a quick run through every part
    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_distillation.py --start centre --work .dev/artifacts/proof-centre
                                   # paths from the centre (training/shapes.py), v-weighted motion teacher: the
                                   # recorded table (docs/proof.md), about 3.8 hours on 2 cores

Each stage resumes from its run folder (--work), so an interrupted proof continues where it stopped. On centre data
the video teacher must follow the direction word before anything is distilled from it (--min-teacher-direction).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, import_pack_and_comfyui  # noqa: E402

# name, stage, steps, clips (or images) per step, learning rate, extra [train] settings
# the stages both plans share: the image teacher and stage 1 see still frames, the same in either plan
TEACHER_IMAGE = ("teacher_image", "teacher_image", 2500, 64, 1e-3, {"min_snr_gamma": 5.0, "lr_schedule": "cosine"})
STAGE1_IMAGE = ("stage1_image", "image", 300, 32, 5e-4, {})
PLAN = [  # --start anywhere: the third run's (docs/proof.md)
    TEACHER_IMAGE,
    ("teacher_motion", "teacher_motion", 700, 8, 5e-4, {"min_snr_gamma": 5.0, "lr_schedule": "cosine"}),
    STAGE1_IMAGE,
    ("stage2_motion", "motion", 400, 4, 5e-4, {"init": "paper"}),
    ("stage2_motion_merged", "motion", 400, 4, 5e-4, {"init": "merged"}),
    ("direct", "direct", 700, 4, 5e-4, {}),  # the steps of stages 1 + 2
]
# --start centre, where the direction word has a value (docs/proof.md): a v-weighted motion teacher learns to follow
# it, and a stage-2 motion module started from the teacher's keeps that motion in 400 steps where the paper's
# zero-initialised one (kept as a row) loses it. From scratch the teacher learns direction slowly: 1400 steps read 36.1
# on direction, three warm restarts of 600 (trained on, fresh cosine schedule) 43.1, 54.2, 66.7 (docs/proof.md).
V_TEACHER = {"v_weighting": True, "lr_schedule": "cosine"}
CENTRE_PLAN = [
    TEACHER_IMAGE,
    ("teacher_motion", "teacher_motion", 1400, 8, 5e-4, V_TEACHER),
    *[(f"teacher_motion_{steps}", "teacher_motion", 600, 8, 5e-4, {**V_TEACHER, "motion_init": "teacher", "seed": 1})
      for steps in (2000, 2600, 3200)],
    STAGE1_IMAGE,
    ("stage2_motion", "motion", 400, 4, 5e-4, {"init": "paper", "motion_init": "teacher"}),
    ("stage2_motion_merged", "motion", 400, 4, 5e-4, {"init": "merged", "motion_init": "teacher"}),
    ("stage2_motion_zero", "motion", 400, 4, 5e-4, {"init": "paper", "motion_init": "zero"}),
    ("direct", "direct", 700, 4, 5e-4, {"motion_init": "teacher"}),
]
PLANS = {"anywhere": PLAN, "centre": CENTRE_PLAN}
# the direction accuracy (DDIM-4, chance 25) the video teacher must reach before distillation; anywhere data gives the
# direction word no value, so its teacher cannot learn it (docs/proof.md)
MIN_TEACHER_DIRECTION = {"anywhere": 0.0, "centre": 50.0}
# the students' runs: their row's label and the run whose LoRA they use
STUDENTS = {"stage2_motion": ("decoupled (paper init)", "stage1_image"),
            "stage2_motion_merged": ("decoupled, LoRA merged in target too", "stage1_image"),
            "stage2_motion_zero": ("decoupled (paper init)", "stage1_image"),
            "direct": ("direct one-stage", "direct")}
PATCH = 2  # 32x32 clips are 12-channel 16x16 ones in the model: the cost of 16x16, shapes large enough to read
LORA_RANK = 16
GUIDANCE = [1.0, 2.0]  # w: the teacher's eps = (1 + w) eps(c) - w eps(empty), cfg 2-3
TEACHER_CFG = 1.0 + sum(GUIDANCE) / 2
REFERENCE_PER_PROMPT = 20  # 720 real clips for the Frechet distance


def train_all(work: Path, frames: int, size: int, paths_from: str, scale: float,
              runs: list[tuple]) -> dict[str, float]:
    """Trains (or resumes) `runs`, entries of the plan of `paths_from`."""
    from animatelcm.training.config import Config
    from animatelcm.training.trainer import BASE_FILE, LORA_FILE, MOTION_FILE, Trainer

    plan, seconds = PLANS[paths_from], {}
    for name, stage, steps, batch, lr, extra in runs:
        model = {"backbone": "tiny", "lora_rank": LORA_RANK, "patch": PATCH}
        if stage != "teacher_image":
            model["base"] = str(work / "teacher_image" / BASE_FILE)
        if stage in ("motion", "direct"):
            model["teacher_motion_module"] = str(work / teacher_run(plan) / MOTION_FILE)
        elif extra.get("motion_init") == "teacher":  # a warm restart trains the motion teacher before it on
            model["teacher_motion_module"] = str(work / teacher_run(plan, before=name) / MOTION_FILE)
        if stage == "motion":
            model["lora"] = str(work / "stage1_image" / LORA_FILE)
        config = Config.from_dict({
            "model": model, "data": {"frames": frames, "size": size, "start": paths_from},
            "train": {"stage": stage, "steps": max(1, math.ceil(steps * scale)), "batch_size": batch,
                      "learning_rate": lr, "warmup_steps": 20, "skip": 10, "guidance": GUIDANCE, **extra},
            "output": {"dir": str(work / name), "checkpoint_every": 100, "sample_every": 500,
                       "sample_captions": ["a red circle moving right", "a blue triangle moving up"]},
        })
        start = time.perf_counter()
        report = Trainer(config).run()
        seconds[name] = time.perf_counter() - start
        print(f"{name}: {report['steps']} steps, final loss {report['loss']:.4f}, {seconds[name]:.0f} s", flush=True)
    return seconds


def teacher_run(plan: list[tuple], before: str | None = None) -> str:
    """The video teacher: the plan's last motion-teacher run (the ones before it are its earlier phases), or the last
    one before run `before`."""
    names = [name for name, *_ in plan]
    earlier = plan[:names.index(before)] if before else plan
    return [name for name, stage, *_ in earlier if stage == "teacher_motion"][-1]


def network(work: Path, size: int, motion_run: str, lora_run: str | None = None):
    """The teacher (no LoRA) or a distilled student: the image teacher's base, a LoRA, a motion module."""
    from safetensors.torch import load_file

    from animatelcm.training.backbones import load_backbone
    from animatelcm.training.lora import SpatialLoRA
    from animatelcm.training.models import VideoUNet
    from animatelcm.training.trainer import BASE_FILE, LORA_FILE, MOTION_FILE, read_motion_model

    backbone = load_backbone("tiny", str(work / "teacher_image" / BASE_FILE), torch.device("cpu"), size, PATCH)
    if lora_run is not None:
        lora = SpatialLoRA(backbone.unet, backbone.unet_config, LORA_RANK)
        lora.load_state_dict(load_file(work / lora_run / LORA_FILE))
    motion = read_motion_model(str(work / motion_run / MOTION_FILE), torch.device("cpu"))
    unet = VideoUNet(backbone.unet)
    return backbone, (lambda x, t, c: unet(x, t, c, motion))


def prompts(frames: int, size: int, per_prompt: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The evaluation's captions, their labels and the noise every model starts from."""
    from animatelcm.training.shapes import all_captions, all_labels

    side = size // PATCH
    captions = all_captions() * per_prompt
    noise = torch.randn(len(captions), frames, 3 * PATCH * PATCH, side, side,
                        generator=torch.Generator().manual_seed(1234))
    return captions, all_labels().repeat(per_prompt, 1), noise


def sample_clips(backbone, net, captions: list[str], noise: torch.Tensor, method: str, steps: int,
                 cfg: float) -> torch.Tensor:
    from animatelcm.training.sampling import sample

    context, empty = backbone.encode_text(captions), backbone.encode_text([""])
    return torch.cat([backbone.decode_video(sample(net, noise[i:i + 36], context[i:i + 36], method, steps,
                                                   uncond=empty, cfg=cfg, seed=i))
                      for i in range(0, len(captions), 36)]).clamp(-1, 1)


def check_teacher(work: Path, frames: int, size: int, paths_from: str, per_prompt: int, classifier_steps: int,
                  minimum: float) -> None:
    """Stops before distillation when the video teacher does not follow the direction word: its students could not
    be measured on keeping its motion, and the distillation (about an hour here) would be wasted."""
    from animatelcm.training.evaluation import prompt_accuracy, train_classifier
    from animatelcm.training.shapes import MovingShapes

    reader = train_classifier(MovingShapes(frames=frames, size=size, start=paths_from), steps=classifier_steps,
                              seed=0, period=PATCH)  # the evaluation's first classifier
    captions, labels, noise = prompts(frames, size, per_prompt)
    teacher = teacher_run(PLANS[paths_from])
    with torch.no_grad():
        backbone, net = network(work, size, teacher)
        videos = sample_clips(backbone, net, captions, noise, "ddim", 4, TEACHER_CFG)
        direction = prompt_accuracy(reader, videos, labels)["direction"]
    print(f"the video teacher reads {direction:.1f} on direction at DDIM-4 (chance 25, needed {minimum:g})", flush=True)
    if direction < minimum:
        sys.exit(f"stopped before distillation: the video teacher ({teacher}) reads "
                 f"{direction:.1f} on direction at DDIM-4, under {minimum:g}. Train it on (one more warm restart in "
                 f"the plan, same --work) or lower --min-teacher-direction (0: no check).")


def evaluate(work: Path, frames: int, size: int, paths_from: str, per_prompt: int, classifier_steps: int,
             classifiers: int = 3, reuse_videos: bool = False) -> list[dict]:
    from animatelcm.training.evaluation import (clip_embeddings, frechet_distance, prompt_accuracy,
                                               temporal_consistency, train_classifier)
    from animatelcm.training.shapes import MovingShapes, all_labels

    dataset = MovingShapes(frames=frames, size=size, start=paths_from)
    # Several classifiers (their seeds), averaged: one classifier's training moves a row by up to 2 points
    # (docs/proof.md).
    readers = [train_classifier(dataset, steps=classifier_steps, seed=seed, period=PATCH)  # reads through the casts
               for seed in range(classifiers)]
    captions, labels, noise = prompts(frames, size, per_prompt)
    # FVD's reference set: many real clips, every prompt alike; a fresh real set of the evaluation's size gives the
    # distance's floor at that size.
    reference_clips = dataset.render(all_labels().repeat(REFERENCE_PER_PROMPT, 1), torch.Generator().manual_seed(7))
    references = [clip_embeddings(reader, reference_clips) for reader in readers]
    saved = work / "evaluation"
    saved.mkdir(exist_ok=True)
    rows = []

    def row(model: str, sampler: str, steps: int | str, cfg: float, videos: torch.Tensor, seconds: float):
        scores = [{**prompt_accuracy(reader, videos, labels), "temporal": temporal_consistency(reader, videos),
                   "frechet": frechet_distance(clip_embeddings(reader, videos), reference)}
                  for reader, reference in zip(readers, references)]
        means = [score["mean"] for score in scores]
        rows.append({"model": model, "sampler": sampler, "steps": steps, "cfg": cfg,
                     **{key: sum(score[key] for score in scores) / len(scores) for key in scores[0]},
                     "spread": max(means) - min(means), "per_classifier": scores,
                     "ms_per_clip": 1000 * seconds / len(captions)})
        print(json.dumps(rows[-1]), flush=True)

    real = dataset.render(labels, torch.Generator().manual_seed(99))
    row("real clips", "-", "-", 0.0, real, 0.0)

    def run(model: str, backbone, net, method: str, steps: int, cfg: float):
        """Samples (or, with --reuse-videos, the clips saved by an earlier evaluation and its time) and their row."""
        path = saved / f"{len(rows):02d}-{method}-{steps}.pt"
        if reuse_videos and path.exists():
            kept = torch.load(path, weights_only=True)
            return row(model, method, steps, cfg, kept["videos"], kept["seconds"])
        start = time.perf_counter()
        videos = sample_clips(backbone, net, captions, noise, method, steps, cfg)
        seconds = time.perf_counter() - start
        torch.save({"videos": videos, "seconds": seconds}, path)
        row(model, method, steps, cfg, videos, seconds)

    with torch.no_grad():
        backbone, net = network(work, size, teacher_run(PLANS[paths_from]))
        for method, steps in [("ddim", 1), ("ddim", 2), ("ddim", 4), ("ddim", 50), ("dpmpp_2m", 1), ("dpmpp_2m", 2),
                              ("dpmpp_2m", 4)]:
            run("teacher", backbone, net, method, steps, TEACHER_CFG)
        if rows[4]["mean"] < 60:  # DDIM-50: what the students are measured against
            print(f"warning: the teacher's DDIM-50 clips score {rows[4]['mean']:.1f} (real clips "
                  f"{rows[0]['mean']:.1f}): a teacher this weak proves nothing; train it longer", flush=True)
        if rows[4]["direction"] < 50:
            print(f"warning: the teacher's DDIM-50 clips read {rows[4]['direction']:.1f} on direction (chance 25): "
                  "the table says nothing about keeping its motion", flush=True)
        for name, _, _, _, _, extra in PLANS[paths_from]:
            if name in STUDENTS:
                label, lora_run = STUDENTS[name]
                motion = "the teacher's" if extra.get("motion_init") == "teacher" else "zero"
                backbone, net = network(work, size, name, lora_run)
                for steps in (1, 2, 4):
                    run(f"student, {label}, motion module from {motion}", backbone, net, "lcm", steps, 1.0)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | sampler | steps | CFG | prompt accuracy (mean) | spread over classifiers | shape | colour | "
             "direction | all three | temporal consistency | Frechet distance | ms per clip |", "|---" * 13 + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['sampler']} | {r['steps']} | {r['cfg']:g} | {r['mean']:.1f} | "
                     f"{r['spread']:.1f} | "
                     f"{r['shape']:.1f} | {r['colour']:.1f} | {r['direction']:.1f} | {r['all']:.1f} | "
                     f"{r['temporal']:.2f} | {r['frechet']:.2f} | {r['ms_per_clip']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / ".dev" / "artifacts" / "proof")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--start", default="anywhere", choices=sorted(PLANS),
                        help="where the shapes' paths start (training/shapes.py, STARTS), and the stages' plan "
                             "(PLAN, CENTRE_PLAN); a new --work for each")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every stage's steps (0.05: smoke run)")
    parser.add_argument("--per-prompt", type=int, default=2, help="clips per prompt (36 prompts) in the evaluation")
    parser.add_argument("--classifier-steps", type=int, default=1500)
    parser.add_argument("--classifiers", type=int, default=3,
                        help="classifiers (seeds) whose scores each row averages; the table gives their spread")
    parser.add_argument("--min-teacher-direction", type=float, default=None,
                        help="direction accuracy (chance 25) the video teacher must reach at DDIM-4 before the first "
                             "distillation step, checked once (default: 50 for --start centre, 0 = no check for "
                             "anywhere, where direction cannot be learnt)")
    parser.add_argument("--reuse-videos", action="store_true",
                        help="score the clips an earlier evaluation saved in WORK/evaluation instead of sampling them "
                             "again (only while no stage has been retrained since)")
    options = parser.parse_args()
    import_pack_and_comfyui()
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    from animatelcm.training.trainer import STATE

    start = time.perf_counter()
    plan = PLANS[options.start]
    teachers = [run for run in plan if run[1].startswith("teacher_")]
    distillation = [run for run in plan if run not in teachers]
    seconds = train_all(options.work, options.frames, options.size, options.start, options.scale, teachers)
    minimum = (MIN_TEACHER_DIRECTION[options.start] if options.min_teacher_direction is None
               else options.min_teacher_direction)
    if minimum and not any((options.work / name / STATE).is_file() for name, *_ in distillation):
        check_teacher(options.work, options.frames, options.size, options.start, options.per_prompt,
                      options.classifier_steps, minimum)
    seconds |= train_all(options.work, options.frames, options.size, options.start, options.scale, distillation)
    rows = evaluate(options.work, options.frames, options.size, options.start, options.per_prompt,
                    options.classifier_steps, options.classifiers, options.reuse_videos)
    wall = time.perf_counter() - start
    text = table(rows)
    print(text)
    print(f"wall time {wall / 60:.1f} min (training {sum(seconds.values()) / 60:.1f} min: "
          + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items()) + f"); torch threads {torch.get_num_threads()}")
    (options.work / "table.md").write_text(text + "\n")
    (options.work / "results.json").write_text(json.dumps({"rows": rows, "train_seconds": seconds, "wall": wall,
                                                           "options": {k: str(v) for k, v in vars(options).items()}},
                                                          indent=2))


if __name__ == "__main__":
    main()

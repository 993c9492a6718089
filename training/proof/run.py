"""The whole proof, start to end: teachers, the check that the video teacher is worth distilling, the distillation
runs, the table; every run resumes from its folder, so an interrupted proof continues where it stopped."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..shapes import MovingShapes
from ..trainer import STATE, Trainer
from .comparison import evaluate, network, prompts, sample_clips, table
from .evaluation import prompt_accuracy, train_classifier
from .plan import MIN_TEACHER_DIRECTION, PATCH, PLANS, TEACHER_CFG, Run, is_teacher, run_config, teacher_run


@dataclass(frozen=True)
class Options:
    """scripts/prove_distillation.py's options, in its order (results.json records them)."""
    work: Path
    frames: int
    size: int
    start: str  # where the shapes' paths start, and so the plan (PLANS)
    scale: float
    per_prompt: int
    classifier_steps: int
    classifiers: int
    min_teacher_direction: float | None  # None: the plan's (MIN_TEACHER_DIRECTION)
    reuse_videos: bool


def train_all(work: Path, frames: int, size: int, paths_from: str, scale: float, runs: list[Run]) -> dict[str, float]:
    """Trains (or resumes) `runs`, entries of the plan of `paths_from`."""
    seconds = {}
    for run in runs:
        config = run_config(run, work, frames, size, paths_from, scale)
        start = time.perf_counter()
        report = Trainer(config).run()
        seconds[run.name] = time.perf_counter() - start
        print(f"{run.name}: {report['steps']} steps, final loss {report['loss']:.4f}, {seconds[run.name]:.0f} s",
              flush=True)
    return seconds


def check_teacher(work: Path, frames: int, size: int, paths_from: str, per_prompt: int, classifier_steps: int,
                  minimum: float) -> None:
    """Stops before distillation when the video teacher does not follow the direction word: its students could not
    be measured on keeping its motion, and the distillation (about an hour here) would be wasted."""
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


def prove(options: Options) -> None:
    """Trains the plan of `options.start`, scores every model, prints the table and writes it to the work folder
    (table.md, results.json)."""
    start = time.perf_counter()
    plan = PLANS[options.start]
    teachers = [run for run in plan if is_teacher(run)]
    distillation = [run for run in plan if run not in teachers]
    seconds = train_all(options.work, options.frames, options.size, options.start, options.scale, teachers)
    minimum = (MIN_TEACHER_DIRECTION[options.start] if options.min_teacher_direction is None
               else options.min_teacher_direction)
    if minimum and not any((options.work / run.name / STATE).is_file() for run in distillation):
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
                                                           "options": {k: str(v) for k, v in asdict(options).items()}},
                                                          indent=2))

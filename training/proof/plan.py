"""The proof's stage runs (docs/proof.md): which stages train in what order, for how many steps and with which
settings, one plan for each place the shapes' paths start (training/shapes.py, STARTS); and each run's config."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from ..config import Config
from ..stages import BY_NAME
from ..trainer import BASE_FILE, LORA_FILE, MOTION_FILE


class Run(NamedTuple):
    name: str  # its folder under --work
    stage: str
    steps: int
    batch_size: int  # clips (or images) per step
    learning_rate: float
    settings: dict  # extra [train] settings


# the stages both plans share: the image teacher and stage 1 see still frames, the same in either plan
TEACHER_IMAGE = Run("teacher_image", "teacher_image", 2500, 64, 1e-3, {"min_snr_gamma": 5.0, "lr_schedule": "cosine"})
STAGE1_IMAGE = Run("stage1_image", "image", 300, 32, 5e-4, {})
PLAN = [  # --start anywhere: the third run's (docs/proof.md)
    TEACHER_IMAGE,
    Run("teacher_motion", "teacher_motion", 700, 8, 5e-4, {"min_snr_gamma": 5.0, "lr_schedule": "cosine"}),
    STAGE1_IMAGE,
    Run("stage2_motion", "motion", 400, 4, 5e-4, {"init": "paper"}),
    Run("stage2_motion_merged", "motion", 400, 4, 5e-4, {"init": "merged"}),
    Run("direct", "direct", 700, 4, 5e-4, {}),  # the steps of stages 1 + 2
]
# --start centre, where the direction word has a value (docs/proof.md): a v-weighted motion teacher learns to follow
# it, and a stage-2 motion module started from the teacher's keeps that motion in 400 steps where the paper's
# zero-initialised one (kept as a row) loses it. From scratch the teacher learns direction slowly: 1400 steps read 36.1
# on direction, three warm restarts of 600 (trained on, fresh cosine schedule) 43.1, 54.2, 66.7 (docs/proof.md).
V_TEACHER = {"v_weighting": True, "lr_schedule": "cosine"}
CENTRE_PLAN = [
    TEACHER_IMAGE,
    Run("teacher_motion", "teacher_motion", 1400, 8, 5e-4, V_TEACHER),
    *[Run(f"teacher_motion_{steps}", "teacher_motion", 600, 8, 5e-4,
          {**V_TEACHER, "motion_init": "teacher", "seed": 1})
      for steps in (2000, 2600, 3200)],
    STAGE1_IMAGE,
    Run("stage2_motion", "motion", 400, 4, 5e-4, {"init": "paper", "motion_init": "teacher"}),
    Run("stage2_motion_merged", "motion", 400, 4, 5e-4, {"init": "merged", "motion_init": "teacher"}),
    Run("stage2_motion_zero", "motion", 400, 4, 5e-4, {"init": "paper", "motion_init": "zero"}),
    Run("direct", "direct", 700, 4, 5e-4, {"motion_init": "teacher"}),
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


def is_teacher(run: Run) -> bool:
    """A teacher's run: trained before anything is distilled from it."""
    return not BY_NAME[run.stage].distils


def teacher_run(plan: list[Run], before: str | None = None) -> str:
    """The video teacher: the plan's last motion-teacher run (the ones before it are its earlier phases), or the last
    one before run `before`."""
    names = [run.name for run in plan]
    earlier = plan[:names.index(before)] if before else plan
    return [run.name for run in earlier if is_teacher(run) and BY_NAME[run.stage].trains_motion][-1]


def run_config(run: Run, work: Path, frames: int, size: int, paths_from: str, scale: float) -> Config:
    """The training config of `run`, an entry of the plan of `paths_from`: its files in work/<name>, the models it
    builds on from the runs before it, its steps times `scale`."""
    plan, stage = PLANS[paths_from], BY_NAME[run.stage]
    model = {"backbone": "tiny", "lora_rank": LORA_RANK, "patch": PATCH}
    if not stage.trains_base:
        model["base"] = str(work / "teacher_image" / BASE_FILE)
    if stage.needs_teacher_motion:
        model["teacher_motion_module"] = str(work / teacher_run(plan) / MOTION_FILE)
    elif run.settings.get("motion_init") == "teacher":  # a warm restart trains the motion teacher before it on
        model["teacher_motion_module"] = str(work / teacher_run(plan, before=run.name) / MOTION_FILE)
    if stage.lora == "given":
        model["lora"] = str(work / "stage1_image" / LORA_FILE)
    return Config.from_dict({
        "model": model, "data": {"frames": frames, "size": size, "start": paths_from},
        "train": {"stage": run.stage, "steps": max(1, math.ceil(run.steps * scale)), "batch_size": run.batch_size,
                  "learning_rate": run.learning_rate, "warmup_steps": 20, "skip": 10, "guidance": GUIDANCE,
                  **run.settings},
        "output": {"dir": str(work / run.name), "checkpoint_every": 100, "sample_every": 500,
                   "sample_captions": ["a red circle moving right", "a blue triangle moving up"]},
    })

"""The training stages (docs/reference.md, section 6) as one table: what each trains, on what, against what, and
what it writes. The trainer and the config's checks read a stage's properties here, never its name.

- `teacher_image`, `teacher_motion`: ordinary noise-prediction training of the small proof model's image UNet and of
  a motion module on it (the video teacher; SD1.5 users have theirs already);
- `image` (stage 1): consistency distillation of the image teacher into a spatial LoRA; target = EMA of the LoRA;
- `motion` (stage 2): the motion module alone, on video, against the video teacher; the stage-1 LoRA is in the
  online model from the start and reaches the target through the EMA (`init = "paper"`), or is in both
  (`init = "merged"`, the comparison);
- `direct`: LoRA and motion module together in one stage (the comparison);
- `teacher_adapter`: an adapter (`train.adapter`: a layout ControlNet or the I2V image encoder) trained for the
  video teacher by noise prediction, as adapters for SD1.5 are trained;
- `adapter`: teacher-free adaptation (the paper's third contribution): an adapter trained or adapted on the frozen
  distilled student (LoRA + motion module) by consistency *training*: the same clip and the same noise at t_n and
  t_{n+k}, the target the EMA adapter's estimate at t_n; no teacher, no ODE solver step (training/trainer.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    stills: bool  # trains on one random frame of each clip (the image stages), else on whole clips
    # "noise": ordinary diffusion training (a teacher); "consistency": distillation from a teacher; "consistency
    # training": the student's own consistency estimate at the next grid point is the target, no teacher
    objective: str
    trains_base: bool  # the image model itself (UNet and text encoder), the small proof model from scratch
    lora: str | None  # the spatial LoRA: "trained", "given" (stage 1's, frozen: model.lora) or None
    trains_motion: bool
    # how the target network holds the LoRA: "ema" (an EMA of its factors), "share" (the given LoRA at the share an
    # EMA of full weights would have reached: training/trainer.py), "full" (the student's, frozen, in both) or None
    # (no target: a teacher stage)
    lora_in_target: str | None
    adapter: bool = False  # trains an adapter (train.adapter) on a frozen model: the teacher's or the student's
    motion: str | None = None  # a frozen motion module it runs: "teacher" (model.teacher_motion_module), "student"

    @property
    def distils(self) -> bool:
        """Distillation from a teacher: a guided teacher, a target network, few-step samples without guidance."""
        return self.objective == "consistency"

    @property
    def samples_as_student(self) -> bool:
        """Its model samples as the distilled student does: few steps, no guidance."""
        return self.objective != "noise"

    @property
    def trains_lora(self) -> bool:
        return self.lora == "trained"

    @property
    def ema_motion(self) -> bool:
        """The target holds an EMA of the motion module being trained."""
        return self.distils and self.trains_motion

    @property
    def needs_teacher_motion(self) -> bool:
        """A video student needs the video teacher's motion module; a motion teacher given one only starts from it
        (a warm restart, train.motion_init = "teacher")."""
        return (self.distils and self.trains_motion) or self.motion == "teacher"

    @property
    def exports(self) -> tuple[str, ...]:
        """What the run writes for use elsewhere: what it trains ("base", "lora", "motion", "adapter")."""
        trained = {"base": self.trains_base, "lora": self.trains_lora, "motion": self.trains_motion,
                   "adapter": self.adapter}
        return tuple(kind for kind, trains in trained.items() if trains)


TABLE = (
    Stage("teacher_image", stills=True, objective="noise", trains_base=True, lora=None, trains_motion=False,
          lora_in_target=None),
    Stage("teacher_motion", stills=False, objective="noise", trains_base=False, lora=None, trains_motion=True,
          lora_in_target=None),
    Stage("image", stills=True, objective="consistency", trains_base=False, lora="trained", trains_motion=False,
          lora_in_target="ema"),
    Stage("motion", stills=False, objective="consistency", trains_base=False, lora="given", trains_motion=True,
          lora_in_target="share"),
    Stage("direct", stills=False, objective="consistency", trains_base=False, lora="trained", trains_motion=True,
          lora_in_target="ema"),
    Stage("teacher_adapter", stills=False, objective="noise", trains_base=False, lora=None, trains_motion=False,
          lora_in_target=None, adapter=True, motion="teacher"),
    Stage("adapter", stills=False, objective="consistency training", trains_base=False, lora="given",
          trains_motion=False, lora_in_target="full", adapter=True, motion="student"),
)
BY_NAME = {stage.name: stage for stage in TABLE}
STAGES = tuple(BY_NAME)

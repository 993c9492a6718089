"""The proof of teacher-free adaptation (docs/proof.md, "Teacher-free adaptation"): adapters for the distilled
student of the distillation proof, on a layout condition (each frame's shape mask) and an image condition (the
first frame), scored on the same clips, noise and classifiers.

Per condition: (a) the adapter trained for the diffusion teacher (stage `teacher_adapter`), plugged into the student
zero-shot; (b) the same adapter after teacher-free adaptation on the student (stage `adapter`, from its file);
(c) an adapter trained teacher-free from scratch with (b)'s budget; the teacher with its adapter at DDIM 4 and 50
(with guidance) and the student without any adapter for reference.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..adapters import ImageAdapter, LayoutAdapter, conditioned_net, layout_hint
from ..backbones import load_backbone
from ..config import Config
from ..lora import SpatialLoRA
from ..models import VideoUNet, motion_width
from ..sampling import sample
from ..shapes import BACKGROUND, MovingShapes, all_captions, all_labels
from ..trainer import BASE_FILE, CONTROLNET_FILE, I2V_FILE, LORA_FILE, MOTION_FILE, read_motion_model
from .evaluation import ClipClassifier, prompt_accuracy, temporal_consistency, train_classifier
from .plan import GUIDANCE, LORA_RANK, PATCH, PLAN, TEACHER_CFG, Run

# the distillation proof's runs the adapters build on: the teachers, and the decoupled student (paper init)
STUDENT_RUNS = ("teacher_image", "teacher_motion", "stage1_image", "stage2_motion")
TEACHER_STEPS, ADAPT_STEPS = 250, 150
CONDITIONS = ("layout", "image")
FILES = {"layout": CONTROLNET_FILE, "image": I2V_FILE}
I2V_MOTION_SCALE = 0.8
TEACHER_MIN_SNR = 5.0


def adapter_runs(condition: str) -> list[Run]:
    """(a)'s teacher adapter, (b) adapting it, (c) from scratch at (b)'s budget."""
    settings = {"adapter": condition}
    # min-SNR weighting: unweighted, the low-noise steps' large, condition-blind losses drown the adapter's signal
    # (1000 steps learnt no use of the condition; 300 with it do, docs/proof.md)
    teacher = settings | {"min_snr_gamma": TEACHER_MIN_SNR}
    return [Run(f"teacher_{condition}_adapter", "teacher_adapter", TEACHER_STEPS, 4, 5e-4, teacher),
            Run(f"adapted_{condition}_adapter", "adapter", ADAPT_STEPS, 4, 5e-4, settings),
            Run(f"scratch_{condition}_adapter", "adapter", ADAPT_STEPS, 4, 5e-4, settings)]


def student_runs() -> list[Run]:
    return [run for run in PLAN if run.name in STUDENT_RUNS]


def adapter_config(run: Run, work: Path, frames: int, size: int, scale: float) -> Config:
    """An adapter run's config: the distillation proof's base, teacher motion module and student in `work`."""
    condition = run.settings["adapter"]
    model = {"backbone": "tiny", "lora_rank": LORA_RANK, "patch": PATCH,
             "base": str(work / "teacher_image" / BASE_FILE)}
    if run.stage == "teacher_adapter":
        model["teacher_motion_module"] = str(work / "teacher_motion" / MOTION_FILE)
    else:
        model |= {"lora": str(work / "stage1_image" / LORA_FILE),
                  "motion_module": str(work / "stage2_motion" / MOTION_FILE)}
    if run.name.startswith("adapted_"):
        model["adapter"] = str(work / f"teacher_{condition}_adapter" / FILES[condition])
    return Config.from_dict({
        "model": model, "data": {"frames": frames, "size": size},
        "train": {"stage": run.stage, "steps": max(1, math.ceil(run.steps * scale)), "batch_size": run.batch_size,
                  "learning_rate": run.learning_rate, "warmup_steps": 20, "skip": 10, "guidance": GUIDANCE,
                  "i2v_motion_scale": I2V_MOTION_SCALE, **run.settings},
        "output": {"dir": str(work / run.name), "checkpoint_every": 100, "sample_every": 0,
                   "sample_captions": ["a red circle moving right", "a blue triangle moving up"]},
    })


def foreground(videos: torch.Tensor, classifier: ClipClassifier) -> torch.Tensor:
    """[B, F, 3, H, W] -> [B, F, H, W] bool: pixels away from their frame's background (its median colour, per
    2x2 position as the classifier takes it: a generated clip's background is rarely exactly black)."""
    distance = (videos - classifier.background(videos)).abs().amax(dim=2)
    return distance > 0.5


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame intersection over union of two masks [..., H, W] (1 where both are empty)."""
    inter, union = (a & b).flatten(-2).sum(-1).float(), (a | b).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


class Models:
    """The proof's networks, read from `work`: the teacher or the student, each adapter with the motion model it
    runs with."""

    def __init__(self, work: Path, size: int):
        self.work, self.size = work, size
        self.backbones = {}  # student or not -> its backbone, read once (the student's with its LoRA in place)

    def backbone(self, student: bool):
        if student not in self.backbones:
            backbone = load_backbone("tiny", str(self.work / "teacher_image" / BASE_FILE), torch.device("cpu"),
                                     self.size, PATCH)
            if student:
                lora = SpatialLoRA(backbone.unet, backbone.unet_config, LORA_RANK)
                lora.load_state_dict(load_file(str(self.work / "stage1_image" / LORA_FILE)))
            self.backbones[student] = backbone
        return self.backbones[student]

    def __call__(self, student: bool, condition: str, adapter_run: str | None):
        """(backbone, net_for(hints)): net_for gives net(x, t, c) for `sample` with the adapter of `adapter_run`
        (None: no adapter) on those hints. The motion model is read for each call: an image adapter goes into it."""
        backbone = self.backbone(student)
        motion = read_motion_model(str(self.work / ("stage2_motion" if student else "teacher_motion") / MOTION_FILE),
                                   torch.device("cpu"))
        adapter = None
        if adapter_run is not None:
            path = self.work / adapter_run / FILES[condition]
            if condition == "layout":
                adapter = LayoutAdapter(backbone.unet_config).load_file(path).eval()
            else:
                adapter = ImageAdapter(motion_width(backbone.unet_config), backbone.channels,
                                       I2V_MOTION_SCALE).load_file(path).eval()
                motion.img_encoder = adapter.encoder  # the image-feature layers go in with it
        unet = VideoUNet(backbone.unet)
        return backbone, lambda hints: conditioned_net(unet, motion, adapter, hints)


@torch.no_grad()
def generate(backbone, net_for, captions: list[str], hints: torch.Tensor, noise: torch.Tensor, method: str,
             steps: int, cfg: float) -> tuple[torch.Tensor, float]:
    """Clips in pixels [-1, 1] and the seconds sampling took (36 clips at a time)."""
    empty, out, seconds = backbone.encode_text([""]), [], 0.0
    for i in range(0, len(captions), 36):
        context = backbone.encode_text(captions[i:i + 36])
        start = time.perf_counter()
        clips = sample(net_for(hints[i:i + 36]), noise[i:i + 36], context, method, steps, uncond=empty, cfg=cfg,
                       seed=i)
        seconds += time.perf_counter() - start
        out.append(backbone.decode_video(clips).clamp(-1, 1))
    return torch.cat(out), seconds


def control_accuracy(condition: str, videos: torch.Tensor, real: torch.Tensor,
                     readers: list[ClipClassifier]) -> float:
    """100 x the IoU of the generated shape with the given one: every frame's for a layout, the first frame's for an
    image (the frame it gives); averaged over the classifiers' background estimates."""
    frames = slice(None) if condition == "layout" else slice(0, 1)
    given = (real != BACKGROUND).any(dim=2)[:, frames]
    return sum(100 * iou(foreground(videos, r)[:, frames], given).mean().item() for r in readers) / len(readers)


def evaluate(work: Path, frames: int, size: int, per_prompt: int, classifier_steps: int, classifiers: int,
             reuse_videos: bool = False, conditions: tuple[str, ...] = CONDITIONS, teacher_only: bool = False
             ) -> list[dict]:
    """Every row's clips are saved in work/adaptation/videos with their sampling time; `reuse_videos` scores the saved
    ones instead of sampling again (only while no run has been retrained since). `teacher_only`: the teacher's rows
    alone (they need no student: to sample them while the student trains)."""
    saved = work / "adaptation" / "videos"
    saved.mkdir(parents=True, exist_ok=True)
    dataset = MovingShapes(frames=frames, size=size)
    readers = [train_classifier(dataset, steps=classifier_steps, seed=seed, period=PATCH)
               for seed in range(classifiers)]
    labels, captions = all_labels().repeat(per_prompt, 1), all_captions() * per_prompt
    real = dataset.render(labels, torch.Generator().manual_seed(99))  # the clips whose conditions are given
    side = size // PATCH
    noise = torch.randn(len(captions), frames, 3 * PATCH * PATCH, side, side,
                        generator=torch.Generator().manual_seed(1234))
    models = Models(work, size)
    rows = []
    for condition in conditions:
        hints = layout_hint(real, side) if condition == "layout" else models.backbone(False).encode_video(real[:, :1])
        plan = [("teacher + its adapter", False, f"teacher_{condition}_adapter", "ddim", steps, TEACHER_CFG)
                for steps in (4, 50)]
        for label, run in (("student, no adapter", None),
                           ("(a) student + the teacher's adapter, zero-shot", f"teacher_{condition}_adapter"),
                           ("(b) (a) after teacher-free adaptation", f"adapted_{condition}_adapter"),
                           ("(c) teacher-free from scratch, (b)'s budget", f"scratch_{condition}_adapter")):
            plan += [(label, True, run, "lcm", steps, 1.0) for steps in (1, 2, 4) if not teacher_only]
        for label, student, run, method, steps, cfg in plan:
            path = saved / f"{condition}-{'student' if student else 'teacher'}-{run}-{method}-{steps}.pt"
            if reuse_videos and path.exists():
                kept = torch.load(path, weights_only=True)
                videos, seconds = kept["videos"], kept["seconds"]
            else:
                backbone, net_for = models(student, condition, run)
                videos, seconds = generate(backbone, net_for, captions, hints, noise, method, steps, cfg)
                torch.save({"videos": videos, "seconds": seconds}, path)
            scores = [{**prompt_accuracy(r, videos, labels), "temporal": temporal_consistency(r, videos)}
                      for r in readers]
            rows.append({"condition": condition, "model": label, "sampler": method, "steps": steps, "cfg": cfg,
                         "control": control_accuracy(condition, videos, real, readers),
                         **{k: sum(s[k] for s in scores) / len(scores) for k in ("mean", "direction", "temporal")},
                         "ms_per_clip": 1000 * seconds / len(captions)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """The markdown table; (b) and (c) rows also give their control accuracy minus (a)'s at the same steps."""
    zero_shot = {(r["condition"], r["steps"]): r["control"] for r in rows if r["model"].startswith("(a)")}
    lines = ["| condition | model | sampler | steps | CFG | control accuracy (IoU %) | vs (a) | "
             "prompt accuracy (mean) | direction | temporal consistency | ms per clip |", "|---" * 11 + "|"]
    for r in rows:
        versus = (f"{r['control'] - zero_shot[(r['condition'], r['steps'])]:+.1f}"
                  if r["model"].startswith(("(b)", "(c)")) and (r["condition"], r["steps"]) in zero_shot else "")
        lines.append(f"| {r['condition']} | {r['model']} | {r['sampler']} | {r['steps']} | {r['cfg']:g} | "
                     f"{r['control']:.1f} | {versus} | {r['mean']:.1f} | {r['direction']:.1f} | {r['temporal']:.2f} | "
                     f"{r['ms_per_clip']:.0f} |")
    return "\n".join(lines)


def prove(work: Path, frames: int, size: int, student_scale: float, scale: float, per_prompt: int,
          classifier_steps: int, classifiers: int, reuse_videos: bool = False) -> None:
    """Trains (or resumes) the student's runs and the adapters, scores every row, prints the table and writes it to
    work/adaptation (table.md, results.json)."""
    from ..trainer import Trainer
    from .run import train_all

    start = time.perf_counter()
    seconds = train_all(work, frames, size, "anywhere", student_scale, student_runs())
    for condition in CONDITIONS:
        for run in adapter_runs(condition):
            began = time.perf_counter()
            report = Trainer(adapter_config(run, work, frames, size, scale)).run()
            seconds[run.name] = time.perf_counter() - began
            print(f"{run.name}: {report['steps']} steps, final loss {report['loss']:.4f}, {seconds[run.name]:.0f} s",
                  flush=True)
    rows = evaluate(work, frames, size, per_prompt, classifier_steps, classifiers, reuse_videos)
    wall = time.perf_counter() - start
    text = table(rows)
    print(text)
    print(f"wall time {wall / 60:.1f} min (training {sum(seconds.values()) / 60:.1f} min: "
          + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items()) + f"); torch threads {torch.get_num_threads()}")
    out = work / "adaptation"
    out.mkdir(exist_ok=True)
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "train_seconds": seconds, "wall": wall}, indent=2))

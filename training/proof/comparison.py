"""The proof's table: every model and sampler on the same noise, prompts and classifiers (docs/proof.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..backbones import load_backbone
from ..lora import SpatialLoRA
from ..models import VideoUNet
from ..sampling import sample
from ..shapes import MovingShapes, all_captions, all_labels
from ..trainer import BASE_FILE, LORA_FILE, MOTION_FILE, read_motion_model
from .evaluation import clip_embeddings, frechet_distance, prompt_accuracy, temporal_consistency, train_classifier
from .plan import LORA_RANK, PATCH, PLANS, STUDENTS, TEACHER_CFG, teacher_run

REFERENCE_PER_PROMPT = 20  # 720 real clips for the Frechet distance


def network(work: Path, size: int, motion_run: str, lora_run: str | None = None):
    """The teacher (no LoRA) or a distilled student: the image teacher's base, a LoRA, a motion module."""
    backbone = load_backbone("tiny", str(work / "teacher_image" / BASE_FILE), torch.device("cpu"), size, PATCH)
    if lora_run is not None:
        lora = SpatialLoRA(backbone.unet, backbone.unet_config, LORA_RANK)
        lora.load_state_dict(load_file(work / lora_run / LORA_FILE))
    motion = read_motion_model(str(work / motion_run / MOTION_FILE), torch.device("cpu"))
    unet = VideoUNet(backbone.unet)
    return backbone, (lambda x, t, c: unet(x, t, c, motion))


def prompts(frames: int, size: int, per_prompt: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The evaluation's captions, their labels and the noise every model starts from."""
    side = size // PATCH
    captions = all_captions() * per_prompt
    noise = torch.randn(len(captions), frames, 3 * PATCH * PATCH, side, side,
                        generator=torch.Generator().manual_seed(1234))
    return captions, all_labels().repeat(per_prompt, 1), noise


def sample_clips(backbone, net, captions: list[str], noise: torch.Tensor, method: str, steps: int,
                 cfg: float) -> torch.Tensor:
    context, empty = backbone.encode_text(captions), backbone.encode_text([""])
    return torch.cat([backbone.decode_video(sample(net, noise[i:i + 36], context[i:i + 36], method, steps,
                                                   uncond=empty, cfg=cfg, seed=i))
                      for i in range(0, len(captions), 36)]).clamp(-1, 1)


def evaluate(work: Path, frames: int, size: int, paths_from: str, per_prompt: int, classifier_steps: int,
             classifiers: int = 3, reuse_videos: bool = False) -> list[dict]:
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
        for student in PLANS[paths_from]:
            if student.name in STUDENTS:
                label, lora_run = STUDENTS[student.name]
                motion = "the teacher's" if student.settings.get("motion_init") == "teacher" else "zero"
                backbone, net = network(work, size, student.name, lora_run)
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

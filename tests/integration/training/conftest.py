"""Small trained stages for the training tests: a teacher (image UNet + motion module) and a stage-1 LoRA at 16x16
pixels and 4 frames, a few steps each (what they compute is not the point, their files are)."""

from pathlib import Path

import pytest

from animatelcm.training.config import Config
from animatelcm.training.trainer import BASE_FILE, LORA_FILE, MOTION_FILE, Trainer

SIZE, FRAMES = 16, 4


def config(stage: str, out: Path, model: dict | None = None, **train) -> Config:
    return Config.from_dict({
        "model": {"backbone": "tiny", "lora_rank": 4, **(model or {})},
        "data": {"frames": FRAMES, "size": SIZE},
        "train": {"stage": stage, "steps": 2, "batch_size": 2, "learning_rate": 1e-3, **train},
        "output": {"dir": str(out), "checkpoint_every": 1000, "sample_captions": ["a red circle moving left"]},
    })


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Paths of the teacher's base model and motion module and of a stage-1 LoRA whose update is not zero."""
    root = tmp_path_factory.mktemp("training")
    Trainer(config("teacher_image", root / "teacher_image")).run()
    base = root / "teacher_image" / BASE_FILE
    Trainer(config("teacher_motion", root / "teacher_motion", {"base": str(base)})).run()
    Trainer(config("image", root / "image", {"base": str(base)})).run()
    return {"base": base, "teacher_motion": root / "teacher_motion" / MOTION_FILE,
            "lora": root / "image" / LORA_FILE}


def stage_models(trained: dict[str, Path], stage: str) -> dict:
    """The [model] settings a stage needs, from the trained fixtures. The adapter stage's student is the stage-1
    LoRA with the teacher's motion module (a stand-in: what it computes is not the point)."""
    model = {"base": str(trained["base"])}
    if stage in ("motion", "direct", "teacher_adapter"):
        model["teacher_motion_module"] = str(trained["teacher_motion"])
    if stage in ("motion", "adapter"):
        model["lora"] = str(trained["lora"])
    if stage == "adapter":
        model["motion_module"] = str(trained["teacher_motion"])
    return model

"""A training run's settings, read from a TOML file (sections [model], [data], [train], [output]) with optional
`section.key=value` overrides from the command line. Unknown keys are errors: a typo must not silently train with
a default."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .shapes import STARTS
from .stages import BY_NAME, STAGES

ADAPTERS = ("layout", "image")


@dataclass
class ModelConfig:
    backbone: str = "tiny"  # "tiny" (the small proof model, pixel space) or "sd15"
    base: str | None = None  # sd15: the SD1.5 checkpoint; tiny: base.safetensors of stage teacher_image
    teacher_motion_module: str | None = None  # the video teacher's motion module (stages motion, direct)
    lora: str | None = None  # stage motion: the stage-1 LoRA (kohya layout); stage adapter: the student's LoRA
    motion_module: str | None = None  # stage adapter: the distilled student's motion module
    adapter: str | None = None  # adapter stages: an adapter to start from (ControlNet file, or an I2V motion module)
    lora_rank: int = 64  # a LoRA trained here; a given one (model.lora) keeps the rank of its file
    lora_alpha: float | None = None  # None = rank (scale 1)
    lora_targets: str = "transformers"  # or "all" (ResBlocks too)
    patch: int = 1  # tiny: pixels per side folded into channels (2: a 32x32 clip is a 12-channel 16x16 one)


@dataclass
class DataConfig:
    kind: str = "shapes"  # synthetic moving shapes, generated on the fly; or "folder": your videos + captions
    path: str | None = None  # folder: video files, each with a caption in a .txt of the same name
    frames: int = 8
    size: int = 32  # pixels (square)
    stride: int = 1  # folder: every stride-th source frame
    start: str = "anywhere"  # shapes: where a path starts on its axis, "anywhere" or "centre" (training/shapes.py)


@dataclass
class TrainConfig:
    stage: str = "image"
    steps: int = 1000
    batch_size: int = 8  # clips per process (images for the image stages)
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # after the warmup: "constant" or "cosine" (to zero at the last step)
    grad_clip: float = 1.0
    ema_decay: float = 0.95  # target network (the SVD script's value)
    skip: int = 10  # k: the DDIM solver's jump on the 1000-step schedule (10: AnimateLCM-T2V's 100-point grid)
    guidance: list[float] = field(default_factory=lambda: [1.0, 2.0])  # w range, teacher eps = (1+w) c - w u
    huber_c: float = 0.001
    caption_dropout: float = 0.1  # teacher stages: share of empty captions, for classifier-free guidance
    min_snr_gamma: float = 0.0  # teacher stages: min-SNR-gamma loss weights (e.g. 5; faster to train); 0 = plain MSE
    v_weighting: bool = False  # teacher stages: v-prediction's loss weights, more on high noise (noise_loss_weights)
    init: str = "paper"  # stage motion: "paper" (LoRA in the online model only) or "merged" (in both)
    motion_init: str = "zero"  # stage teacher_motion/motion/direct: "zero" (fresh) or "teacher" (teacher_motion_module)
    adapter: str = "layout"  # adapter stages: "layout" (a ControlNet on a per-frame layout) or "image" (I2V encoder)
    i2v_motion_scale: float = 0.8  # adapter = "image": the encoder's frame-position scale (ALCM_ImageToVideo's)
    mixed_precision: str = "no"  # "no", "fp16", "bf16" (CUDA)
    gradient_checkpointing: bool = False
    seed: int = 0


@dataclass
class OutputConfig:
    dir: str = "runs/animatelcm"
    checkpoint_every: int = 500
    sample_every: int = 0  # 0: samples at the end only
    sample_captions: list[str] = field(default_factory=lambda: ["a red circle moving right"])
    sample_steps: int = 4
    resume: bool = True  # continue from dir/state.pt when there is one


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        sections = {f.name: f.type for f in fields(cls)}
        config = cls()
        for name, section in values.items():
            if name not in sections:
                raise ValueError(f"unknown config section [{name}]; sections are {sorted(sections)}")
            target = getattr(config, name)
            known = {f.name for f in fields(target)}
            for key, value in section.items():
                if key not in known:
                    raise ValueError(f"unknown setting {name}.{key}; [{name}] has {sorted(known)}")
                setattr(target, key, value)
        config.check()
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> "Config":
        values = tomllib.loads(Path(path).read_text()) if path else {}
        for item in overrides:
            key, _, value = item.partition("=")
            section, _, name = key.strip().partition(".")
            if not name or not _:
                raise ValueError(f"override {item!r}: expected section.key=value, e.g. train.steps=100")
            parsed = tomllib.loads(f"v = {value}")["v"] if value.strip() else None
            values.setdefault(section, {})[name] = parsed
        return cls.from_dict(values)

    def check(self) -> None:
        train, model = self.train, self.model
        if train.stage not in STAGES:
            raise ValueError(f"train.stage must be one of {STAGES}, got {train.stage!r}")
        stage = BY_NAME[train.stage]
        if stage.trains_base and model.backbone != "tiny":
            raise ValueError(f"stage {stage.name} trains the small proof model from scratch (backbone tiny); an SD1.5 "
                             "checkpoint is already an image teacher")
        if not stage.trains_base and model.base is None:
            raise ValueError(f"stage {stage.name} needs model.base (the base image model)")
        if stage.needs_teacher_motion and model.teacher_motion_module is None:
            raise ValueError(f"stage {stage.name} needs model.teacher_motion_module (the video teacher's)")
        if stage.lora == "given" and model.lora is None:
            raise ValueError(f"stage {stage.name} needs model.lora: the spatial LoRA of stage image")
        if stage.motion == "student" and model.motion_module is None:
            raise ValueError(f"stage {stage.name} needs model.motion_module: the distilled student's motion module")
        if train.adapter not in ADAPTERS:
            raise ValueError(f"train.adapter must be one of {ADAPTERS}, got {train.adapter!r}")
        if model.adapter is not None and not stage.adapter:
            raise ValueError(f"model.adapter is for the adapter stages; stage {stage.name} trains none")
        if train.init not in ("paper", "merged"):
            raise ValueError(f"train.init must be 'paper' or 'merged', got {train.init!r}")
        if train.motion_init not in ("zero", "teacher"):
            raise ValueError(f"train.motion_init must be 'zero' or 'teacher', got {train.motion_init!r}")
        if train.motion_init == "teacher" and model.teacher_motion_module is None:
            raise ValueError("train.motion_init = \"teacher\" needs model.teacher_motion_module: the motion module to "
                             "start from")
        if train.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"train.lr_schedule must be 'constant' or 'cosine', got {train.lr_schedule!r}")
        if train.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"train.mixed_precision must be no, fp16 or bf16, got {train.mixed_precision!r}")
        if not 1 <= train.skip <= 500 or 1000 % train.skip:
            raise ValueError(f"train.skip must divide 1000 (e.g. 10 or 20), got {train.skip}")
        if train.v_weighting and train.min_snr_gamma:
            raise ValueError("train.v_weighting and train.min_snr_gamma are two loss weightings: set one "
                             "(min_snr_gamma = 0 for v)")
        low, high = train.guidance
        if not 0 <= low <= high:
            raise ValueError(f"train.guidance must be a range [low, high] with 0 <= low <= high, got {train.guidance}")
        if self.data.kind not in ("shapes", "folder"):
            raise ValueError(f"data.kind must be 'shapes' or 'folder', got {self.data.kind!r}")
        if self.data.start not in STARTS:
            raise ValueError(f"data.start must be one of {STARTS}, got {self.data.start!r}")
        if self.data.kind == "folder" and not self.data.path:
            raise ValueError("data.kind = \"folder\" needs data.path: a folder of videos with .txt captions")
        if model.patch < 1 or self.data.size % model.patch:
            raise ValueError(f"data.size ({self.data.size}) must be a multiple of model.patch ({model.patch})")
        if model.backbone == "sd15" and model.patch != 1:
            raise ValueError("model.patch is for the tiny backbone; SD1.5's VAE sets its own downscale (8)")
        if model.backbone == "sd15" and self.data.size % 8:
            raise ValueError(f"data.size must be a multiple of 8 for SD1.5 latents, got {self.data.size}")

    def to_dict(self) -> dict:
        return asdict(self)

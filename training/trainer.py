"""One training run of one stage, on one process or many (PyTorch DDP under `torchrun`). What each stage trains, on
what, against what and what it writes is the table in training/stages.py; the trainer reads it, never a stage's name.

The target's share of the LoRA follows the EMA: the online spatial weights are constant (W + dW), so an EMA of the
target's weights started at W is W + lambda_n dW with lambda_n = 1 - decay^n; the target runs the same layers with the
update at scale lambda_n instead of holding a second copy of the UNet.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..motion_models.checkpoint import load_motion_model
from ..motion_models.motion_module import MotionModel
from ..samplers.schedule import NoiseSchedule
from ..video.writer import VideoSettings, write_video
from .adapters import ImageAdapter, LayoutAdapter, conditioned_net, layout_hint, target_copy
from .backbones import Backbone, load_backbone, save_tiny_backbone
from .config import Config
from .consistency import consistency_function, ddim_step, ema_update, guided_eps, noise_loss_weights, pseudo_huber
from .lora import SpatialLoRA, rank_of
from .models import VideoUNet, motion_width, new_motion_model
from .sampling import sample
from .shapes import MovingShapes
from .stages import BY_NAME
from .video_folder import VideoFolder

TEACHER_PE_LENGTH = 32  # the teacher's motion module is saved like AnimateDiff v2 (stored 32-frame encoding)
STATE = "state.pt"
LORA_FILE = "lora.safetensors"
MOTION_FILE = "motion_module.safetensors"
BASE_FILE = "base.safetensors"
CONTROLNET_FILE = "controlnet.safetensors"  # adapter = "layout": for ComfyUI's models/controlnet
I2V_FILE = "i2v_motion_module.safetensors"  # adapter = "image": the motion module with its img_encoder.*
log = logging.getLogger("animatelcm.training")


class Online(nn.Module):
    """The network being trained, as one module (what DDP wraps): the UNet with the online LoRA, motion model and
    adapter (a frozen motion model of an adapter stage is here too: it runs in the online model)."""

    def __init__(self, video_unet: VideoUNet, backbone: Backbone, lora: SpatialLoRA | None,
                 motion: MotionModel | None, train_base: bool, adapter: nn.Module | None = None):
        super().__init__()
        self.motion = motion
        self.adapter = adapter
        self.lora_updates = nn.ModuleList(lora.updates.values() if lora else [])
        self.base = nn.ModuleList(backbone.trainable_modules() if train_base else [])
        self.__dict__.update(video_unet=video_unet, backbone=backbone, lora=lora)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, captions: list[str],
                condition: torch.Tensor | None = None) -> torch.Tensor:
        context = self.backbone.encode_text(captions)
        with self.lora.applied(1.0) if self.lora else nullcontext():
            return conditioned_net(self.video_unet, self.motion, self.adapter, condition)(x, timesteps, context)


class Trainer:
    def __init__(self, config: Config):
        self.config = config
        train = config.train
        self.stage = BY_NAME[train.stage]
        self.rank, self.world, self.device = _distributed()
        self.out = Path(config.output.dir)
        torch.manual_seed(train.seed)  # the same initial weights on every process (DDP also broadcasts them)
        data = config.data
        self.data = (MovingShapes(frames=data.frames, size=data.size, start=data.start) if data.kind == "shapes" else
                     VideoFolder(data.path, frames=data.frames, size=data.size, stride=data.stride))
        self.generator = torch.Generator().manual_seed(train.seed * 1000 + self.rank)
        self.backbone = load_backbone(config.model.backbone, config.model.base, self.device, config.data.size,
                                      config.model.patch)
        self.video_unet = VideoUNet(self.backbone.unet, train.gradient_checkpointing)
        self.alphas_cumprod = NoiseSchedule().alphas_cumprod().to(self.device)
        self.step = 0
        self.lora_scale = 0.0  # a given LoRA (stage motion): the target's share of it
        self._build_models()
        trainable = [p for p in self.online.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=train.learning_rate, weight_decay=train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, partial(
            learning_rate_factor, warmup=train.warmup_steps, steps=train.steps, schedule=train.lr_schedule))
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(train.mixed_precision)
        if self.amp_dtype is not None and self.device.type != "cuda":
            raise ValueError("mixed precision needs CUDA: set train.mixed_precision = \"no\" on the CPU")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.model = (nn.parallel.DistributedDataParallel(self.online, device_ids=[self.device] if
                                                          self.device.type == "cuda" else None)
                      if self.world > 1 else self.online)
        if config.output.resume and (self.out / STATE).is_file():
            self.load_state(self.out / STATE)

    # -- models ----------------------------------------------------------------------------------------------------

    def _build_models(self) -> None:
        model, train, stage = self.config.model, self.config.train, self.stage
        self.backbone.unet.requires_grad_(stage.trains_base)
        if self.backbone.text_encoder is not None:
            self.backbone.text_encoder.requires_grad_(stage.trains_base)
        width = motion_width(self.backbone.unet_config)
        self.teacher_motion = self.lora = self.motion = self.target_motion = self.adapter = self.target_adapter = None
        if model.teacher_motion_module:
            self.teacher_motion = read_motion_model(model.teacher_motion_module, self.device).requires_grad_(False)
        given = load_file(model.lora) if stage.lora == "given" else None
        if stage.lora is not None:
            rank = model.lora_rank if given is None else rank_of(given, model.lora)
            self.lora = SpatialLoRA(self.backbone.unet, self.backbone.unet_config, rank, model.lora_alpha,
                                    model.lora_targets)
        if given is not None:
            self.lora.load_state_dict(given)
            for p in self.lora.parameters():
                p.requires_grad_(False)
            self.lora_scale = 0.0 if train.init == "paper" and stage.lora_in_target == "share" else 1.0
        if stage.trains_motion:
            self.motion = (new_motion_model(width, self.device) if stage.distils else
                           new_motion_model(width, self.device, pe_length=TEACHER_PE_LENGTH))
        if self.motion is not None and train.motion_init == "teacher":
            self.motion.load_state_dict(self.teacher_motion.state_dict(), strict=False)
            if not stage.distils:  # a warm restart: the given module is where it starts, not a teacher to keep
                self.teacher_motion = None
        if stage.ema_motion:
            self.target_motion = new_motion_model(width, self.device).requires_grad_(False)
            self.target_motion.load_state_dict(self.motion.state_dict())
        if stage.adapter:
            self._build_adapter(width)
        self.online = Online(self.video_unet, self.backbone, self.lora, self.motion, stage.trains_base, self.adapter)

    def _build_adapter(self, width: tuple[int, ...]) -> None:
        """The adapter, new or from model.adapter, and the frozen motion model it runs with (the teacher's or the
        student's); an image encoder becomes that motion model's `img_encoder`, which puts the UNet's image-feature
        layers in and is saved with it."""
        model, train = self.config.model, self.config.train
        if self.stage.motion == "student":
            self.motion = read_motion_model(model.motion_module, self.device).requires_grad_(False)
        else:
            self.motion, self.teacher_motion = self.teacher_motion, None
        if train.adapter == "layout":
            self.adapter = LayoutAdapter(self.backbone.unet_config, self.device, train.gradient_checkpointing)
            if model.adapter is None:  # a copy of the encoder it controls: the student's, its LoRA in
                with self.lora.applied(1.0) if self.lora else nullcontext():
                    self.adapter.start_from_unet(self.backbone.unet)
        else:
            self.adapter = ImageAdapter(width, self.backbone.channels, train.i2v_motion_scale, self.device)
            self.motion.img_encoder = self.adapter.encoder
        if model.adapter is not None:
            self.adapter.load_file(model.adapter)
        if self.stage.objective == "consistency training":
            self.target_adapter = target_copy(self.adapter)

    # -- one step --------------------------------------------------------------------------------------------------

    def batch(self) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
        """Model-space clips, their captions and, for an adapter, their conditions."""
        clips = self.data.sample(self.config.train.batch_size, self.generator)
        videos = clips.videos
        if self.stage.stills:  # one random frame of each clip
            pick = torch.randint(videos.shape[1], (videos.shape[0],), generator=self.generator)
            videos = videos[torch.arange(videos.shape[0]), pick].unsqueeze(1)
        videos = videos.to(self.device)
        return self.backbone.encode_video(videos), clips.captions, self.condition(videos)

    def condition(self, videos: torch.Tensor) -> torch.Tensor | None:
        """What the adapter reads from pixel clips: the layout hints (shape masks; edges of folder videos) or the
        first frame in model space."""
        if self.adapter is None:
            return None
        if self.config.train.adapter == "image":
            return self.backbone.encode_video(videos[:, :1])
        side = self.config.data.size // self.backbone.downscale
        return layout_hint(videos, side, edges=self.config.data.kind == "folder")

    def loss(self, x0: torch.Tensor, captions: list[str], condition: torch.Tensor | None = None) -> torch.Tensor:
        if self.stage.distils:
            return self.consistency_loss(x0, captions)
        if self.stage.objective == "consistency training":
            return self.consistency_training_loss(x0, captions, condition)
        return self.diffusion_loss(x0, captions, condition)

    def _noised(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(x0.shape, generator=self.generator).to(x0)
        abar = self.alphas_cumprod[t].float().view(-1, *[1] * (x0.ndim - 1))
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise, noise

    def diffusion_loss(self, x0: torch.Tensor, captions: list[str],
                       condition: torch.Tensor | None = None) -> torch.Tensor:
        """Noise prediction (the teachers): MSE to the true noise, weighted per timestep as `min_snr_gamma` or
        `v_weighting` say; some captions emptied for guidance."""
        train = self.config.train
        drop = torch.rand(len(captions), generator=self.generator) < train.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        t = torch.randint(0, len(self.alphas_cumprod), (x0.shape[0],), generator=self.generator).to(self.device)
        x_t, noise = self._noised(x0, t)
        with self._autocast():
            eps = self.model(x_t, t, captions, condition)
        per_sample = (eps.float() - noise).square().flatten(1).mean(dim=1)
        return (per_sample * noise_loss_weights(self.alphas_cumprod, t, train.min_snr_gamma, train.v_weighting)).mean()

    def consistency_loss(self, x0: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """d(f_online(x_{t_{n+k}}, t_{n+k}), f_target(x^_{t_n}, t_n)), x^_{t_n} one DDIM step of the guided teacher."""
        train = self.config.train
        b = x0.shape[0]
        t, s = self.timestep_pairs(b)
        low, high = train.guidance
        w = (low + (high - low) * torch.rand(b, generator=self.generator)).to(self.device)
        x_t, _ = self._noised(x0, t)
        with torch.no_grad(), self._autocast():
            context = self.backbone.encode_text(captions)
            empty = self.backbone.encode_text([""] * b)
            with self.lora.applied(0.0):
                eps_c, eps_u = self.video_unet(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([context, empty]),
                                               self.teacher_motion).float().chunk(2)
            x_s = ddim_step(x_t, guided_eps(eps_c, eps_u, w), t, s, self.alphas_cumprod)
            with self._target_lora():
                eps_target = self.video_unet(x_s, s, context, self.target_motion).float()
            target = consistency_function(x_s, eps_target, s, self.alphas_cumprod)
        with self._autocast():
            eps = self.model(x_t, t, captions)
        prediction = consistency_function(x_t, eps.float(), t, self.alphas_cumprod)
        return pseudo_huber(prediction, target, train.huber_c)

    def timestep_pairs(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(t_{n+k}, t_n) on the student's grid: t_{n+k} one of skip-1, 2 skip-1, ..., 999 and t_n = t_{n+k} - skip
        (at least 0)."""
        skip = self.config.train.skip
        grid = len(self.alphas_cumprod) // skip
        t = (skip * torch.randint(1, grid + 1, (count,), generator=self.generator) - 1).to(self.device)
        return t, (t - skip).clamp(min=0)

    def consistency_training_loss(self, x0: torch.Tensor, captions: list[str],
                                  condition: torch.Tensor | None) -> torch.Tensor:
        """d(f_online(x_{t_{n+k}}, t_{n+k}), f_target(x_{t_n}, t_n)): both noised from the same clip with the same
        noise, the target the EMA adapter's on the same frozen student; no teacher, no solver step."""
        t, s = self.timestep_pairs(x0.shape[0])
        x_t, noise = self._noised(x0, t)
        abar_s = self.alphas_cumprod[s].float().view(-1, *[1] * (x0.ndim - 1))
        x_s = abar_s.sqrt() * x0 + (1 - abar_s).sqrt() * noise
        with torch.no_grad(), self._autocast(), self.lora.applied(1.0):
            context = self.backbone.encode_text(captions)
            net = conditioned_net(self.video_unet, self.motion, self.target_adapter, condition)
            target = consistency_function(x_s, net(x_s, s, context).float(), s, self.alphas_cumprod)
        with self._autocast():
            eps = self.model(x_t, t, captions, condition)
        prediction = consistency_function(x_t, eps.float(), t, self.alphas_cumprod)
        return pseudo_huber(prediction, target, self.config.train.huber_c)

    def _target_lora(self):
        if self.stage.lora_in_target == "share":
            return self.lora.applied(self.lora_scale)
        return self.lora.applied(1.0, ema=True)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def update_targets(self) -> None:
        """The EMA after each optimiser step: LoRA factors (image, direct), motion model (motion, direct), the
        target's share of the LoRA (motion), the adapter (adapter)."""
        decay, stage = self.config.train.ema_decay, self.stage
        if stage.lora_in_target == "ema":
            self.lora.update_ema(decay)
        if stage.ema_motion:
            ema_update(self.target_motion.parameters(), self.motion.parameters(), decay)
        if stage.lora_in_target == "share":
            self.lora_scale = decay * self.lora_scale + (1 - decay) * 1.0
        if self.target_adapter is not None:
            ema_update(self.target_adapter.parameters(), self.adapter.parameters(), decay)

    def train_step(self) -> float:
        x0, captions, condition = self.batch()
        loss = self.loss(x0, captions, condition)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.update_targets()
        self.step += 1
        return loss.item()

    # -- the loop --------------------------------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        config = self.config
        total = config.train.steps
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        bar = tqdm(total=total, initial=self.step, disable=self.rank != 0, desc=config.train.stage, unit="step")
        start, first_step, losses = time.perf_counter(), self.step, []
        while self.step < total:
            losses.append(self.train_step())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4g}", **({"lora_in_target": f"{self.lora_scale:.3f}"}
                                                          if self.stage.lora_in_target == "share" else {}))
            if self.step % config.output.checkpoint_every == 0 and self.step < total:
                self.save()
            if config.output.sample_every and self.step % config.output.sample_every == 0 and self.step < total:
                self.write_samples()
        bar.close()
        seconds = time.perf_counter() - start
        self.save()
        self.write_samples()
        steps = self.step - first_step
        report = {"steps": steps, "seconds": seconds, "loss": float(np.mean(losses[-50:])) if losses else math.nan,
                  "samples_per_second": steps * config.train.batch_size * self.world / seconds if steps else 0.0,
                  "peak_memory_gib": (torch.cuda.max_memory_allocated(self.device) / 2 ** 30
                                      if self.device.type == "cuda" else math.nan)}
        if self.rank == 0:
            log.info("%s: %d steps in %.1f s, %.2f samples/s over %d process(es), peak memory %.2f GiB",
                     config.train.stage, steps, seconds, report["samples_per_second"], self.world,
                     report["peak_memory_gib"])
        return report

    # -- files -----------------------------------------------------------------------------------------------------

    def exports(self) -> dict[str, dict[str, torch.Tensor]]:
        """The released layouts: kohya LoRA, AnimateLCM/AnimateDiff motion module, ControlNet, AnimateLCM-I2V motion
        module (the frozen motion module with the trained img_encoder.*); the tiny proof base model is saved apart."""
        files = {}
        if "lora" in self.stage.exports:
            files[LORA_FILE] = self.lora.state_dict()
        adapter = self.config.train.adapter if "adapter" in self.stage.exports else None
        if "motion" in self.stage.exports or adapter == "image":
            # an I2V file is the frozen motion module with the trained encoder in it, as AnimateLCM-I2V is released
            name = I2V_FILE if adapter == "image" else MOTION_FILE
            files[name] = {k: v.detach().cpu().contiguous() for k, v in self.motion.state_dict().items()}
        if adapter == "layout":
            files[CONTROLNET_FILE] = self.adapter.file_weights()
        return files

    def save(self) -> None:
        if self.rank != 0:
            return
        state = {"step": self.step, "lora_scale": self.lora_scale, "online": self.online.state_dict(),
                 "target_motion": self.target_motion.state_dict() if self.target_motion else {},
                 "target_adapter": self.target_adapter.state_dict() if self.target_adapter else {},
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": self.generator.get_state()}
        _atomic(self.out / STATE, lambda path: torch.save(state, path))
        for name, weights in self.exports().items():
            _atomic(self.out / name, lambda path, w=weights: save_file(w, str(path)))
        if "base" in self.stage.exports:
            _atomic(self.out / BASE_FILE, lambda path: save_tiny_backbone(self.backbone, path))

    def load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.online.load_state_dict(state["online"])
        if self.target_motion is not None:
            self.target_motion.load_state_dict(state["target_motion"])
        if self.target_adapter is not None:
            self.target_adapter.load_state_dict(state["target_adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["rng"].cpu())
        self.step, self.lora_scale = int(state["step"]), float(state["lora_scale"])
        if self.rank == 0:
            log.info("resumed %s at step %d from %s", self.config.train.stage, self.step, path)

    @torch.no_grad()
    def write_samples(self) -> list[Path]:
        """Sample clips of the configured captions with the model as trained so far: students with the AnimateLCM
        sampler (no guidance), teachers with DDIM 25 steps and guidance. An adapter samples the conditions of as
        many fixed clips of the data, with their captions."""
        if self.rank != 0:
            return []
        output = self.config.output
        student = self.stage.samples_as_student
        frames = 1 if self.stage.stills else self.config.data.frames
        captions, condition = list(output.sample_captions), None
        if self.adapter is not None:
            clips = self.data.sample(len(captions), torch.Generator().manual_seed(0))
            captions, condition = clips.captions, self.condition(clips.videos.to(self.device))
        side = self.config.data.size // self.backbone.downscale
        noise = torch.randn(len(captions), frames, self.backbone.channels, side, side,
                            generator=torch.Generator().manual_seed(0))
        context = self.backbone.encode_text(captions)
        empty = self.backbone.encode_text([""])
        self.online.eval()
        with self.lora.applied(1.0) if self.lora else nullcontext():
            net = conditioned_net(self.video_unet, self.motion, self.adapter, condition)
            clips = sample(net, noise.to(self.device), context, "lcm" if student else "ddim",
                           output.sample_steps if student else 25, uncond=empty,
                           cfg=1.0 if student else 1.0 + float(np.mean(self.config.train.guidance)))
        self.online.train()
        pixels = self.backbone.decode_video(clips)
        folder = self.out / "samples"
        folder.mkdir(exist_ok=True)
        paths = []
        for i, clip in enumerate(pixels):
            frames_uint8 = ((clip.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            path = folder / f"step{self.step:06d}-{i}.{'png' if frames == 1 else 'mp4'}"
            if frames == 1:
                Image.fromarray(frames_uint8[0]).save(path)
            else:
                write_video(str(path), iter(frames_uint8), VideoSettings(format="mp4", frame_rate=8.0))
            paths.append(path)
        return paths


def learning_rate_factor(step: int, warmup: int, steps: int, schedule: str) -> float:
    """Linear warmup, then constant or a cosine decay to zero at the last step: a teacher's final weights taken at a
    high constant rate are noisy, and their per-channel biases show as colour casts in every sample."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(steps - warmup, 1))
    return 0.5 * (1 + math.cos(math.pi * progress))


def read_motion_model(path: str, device: torch.device) -> MotionModel:
    """A motion-module file (any format the pack loads), float32 on `device`."""
    from ..motion_models.checkpoint import read_state_dict

    return load_motion_model(read_state_dict(path), Path(path).name, device=device).model.float()


def _atomic(path: Path, write) -> None:
    """Writes to a temporary name, then renames: an interrupted save never leaves a half-written file."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def _distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device): one process per GPU under torchrun (env WORLD_SIZE), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")

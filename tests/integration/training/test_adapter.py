"""Teacher-free adaptation (stage `adapter`) and the teacher's adapters (stage `teacher_adapter`) on tiny shapes: the
consistency-training pair shares its clip and noise, the target starts as the online adapter, a ControlNet from
scratch starts as the unadapted student, the loss falls on a fixed batch, runs resume exactly, gradient checkpointing
changes nothing, and the files load as ControlNets and I2V motion modules."""

import math

import pytest
import torch
from safetensors.torch import load_file

from animatelcm.motion_models.checkpoint import read_state_dict
from animatelcm.patching.motion_injection import load_motion_model_file
from animatelcm.training.adapters import CONTROLNET_PREFIX, HINT_SCALE, conditioned_net, layout_hint
from animatelcm.training.shapes import MovingShapes
from animatelcm.training.trainer import CONTROLNET_FILE, I2V_FILE, MOTION_FILE, Trainer

from .conftest import FRAMES, SIZE, config, stage_models

ADAPTERS = ["layout", "image"]
FILES = {"layout": CONTROLNET_FILE, "image": I2V_FILE}


def adapter_trainer(trained, out, adapter="layout", stage="adapter", **train):
    return Trainer(config(stage, out, stage_models(trained, stage), adapter=adapter, **train))


class Recorder:
    """Stands in for the trainer's video UNet: records each call's input and timesteps, then runs the real one."""

    def __init__(self, video_unet):
        self.video_unet, self.calls = video_unet, []

    def __call__(self, x, timesteps, *args, **kwargs):
        self.calls.append((x.detach().clone(), timesteps.clone()))
        return self.video_unet(x, timesteps, *args, **kwargs)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_pair_is_one_clip_with_one_noise_at_two_neighbouring_grid_points(adapter, trained, tmp_path):
    trainer = adapter_trainer(trained, tmp_path, adapter)
    recorder = Recorder(trainer.video_unet)
    trainer.video_unet = recorder
    trainer.online.__dict__["video_unet"] = recorder
    x0, captions, condition = trainer.batch()
    trainer.loss(x0, captions, condition)

    (x_s, s), (x_t, t) = recorder.calls  # the target's call (no grad) first, then the online one
    assert ((t - s == 10) | ((t == 9) & (s == 0))).all()  # t_n = t_{n+k} - k, at least 0
    assert ((t + 1) % 10 == 0).all()  # t_{n+k} on the student's 100-point grid
    abar = trainer.alphas_cumprod.float()

    def noise_in(x, steps):
        a = abar[steps].view(-1, 1, 1, 1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    torch.testing.assert_close(noise_in(x_s, s), noise_in(x_t, t), rtol=1e-4, atol=1e-4)
    assert noise_in(x_t, t).std() > 0.5  # real noise, not a zero tensor


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_target_starts_equal_to_the_online_adapter(adapter, trained, tmp_path):
    trainer = adapter_trainer(trained, tmp_path, adapter)
    online, target = trainer.adapter.state_dict(), trainer.target_adapter.state_dict()
    assert online.keys() == target.keys()
    assert all(torch.equal(online[k], target[k]) for k in online)
    assert not any(p.requires_grad for p in trainer.target_adapter.parameters())
    trained = {id(p) for p in trainer.online.parameters() if p.requires_grad}
    assert trained == {id(p) for p in trainer.adapter.parameters()}  # the adapter alone: the student stays frozen


def test_a_controlnet_from_scratch_starts_as_the_unadapted_student(trained, tmp_path):
    trainer = adapter_trainer(trained, tmp_path, "layout")
    x0, captions, condition = trainer.batch()
    context = trainer.backbone.encode_text(captions)
    t = torch.tensor([499, 799])
    with torch.no_grad(), trainer.lora.applied(1.0):
        plain = conditioned_net(trainer.video_unet, trainer.motion, None, None)(x0, t, context)
        adapted = conditioned_net(trainer.video_unet, trainer.motion, trainer.adapter, condition)(x0, t, context)
        # the zero convs are what keeps it out: with them non-zero the same call differs
        torch.nn.init.normal_(trainer.adapter.control.middle_block_out[0].weight, std=0.1)
        moved = conditioned_net(trainer.video_unet, trainer.motion, trainer.adapter, condition)(x0, t, context)
    torch.testing.assert_close(adapted, plain, rtol=0, atol=0)
    assert (moved - plain).abs().max() > 1e-3


def test_an_image_encoder_from_scratch_starts_with_the_position_encoding_alone(trained, tmp_path):
    """The official initialisation (conv_in and block2 zero): the features are i2v_motion_scale x PE per frame."""
    trainer = adapter_trainer(trained, tmp_path, "image")
    encoder = trainer.adapter.encoder
    latent = torch.randn(2, 1, trainer.backbone.channels, SIZE, SIZE)
    features = trainer.adapter.bind(latent)(torch.zeros(2 * FRAMES, 1, 1, 1), None, None)["image_features"]
    pe = encoder.position_encoding[:FRAMES].repeat(2, 1)
    torch.testing.assert_close(features[0], 0.8 * pe[:, :, None, None].expand_as(features[0]))


@pytest.mark.parametrize("stage", ["teacher_adapter", "adapter"])
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_loss_is_finite_and_goes_down_on_a_fixed_batch(stage, adapter, trained, tmp_path):
    # the image encoder starts from zero convolutions and adds to four hidden states only: on this barely trained
    # model it moves the loss slowly, but at every step
    rate, steps, drop = (2e-3, 8, 0.8) if adapter == "layout" else (1e-3, 12, 0.97)
    trainer = adapter_trainer(trained, tmp_path, adapter, stage, learning_rate=rate, ema_decay=0.5)
    state = trainer.generator.get_state()
    losses = []
    for _ in range(steps):
        trainer.generator.set_state(state)  # the same clips, conditions, noise and timesteps every step
        losses.append(trainer.train_step())
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < drop * losses[0], losses
    if adapter == "image":
        assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_the_target_adapter_is_the_ema_of_the_online_one(trained, tmp_path):
    trainer = adapter_trainer(trained, tmp_path, "layout", ema_decay=0.5)
    before = [p.detach().clone() for p in trainer.target_adapter.parameters()]
    trainer.train_step()
    for old, online, target in zip(before, trainer.adapter.parameters(), trainer.target_adapter.parameters()):
        torch.testing.assert_close(target, 0.5 * old + 0.5 * online.detach())
    assert any(not torch.equal(old, new) for old, new in zip(before, trainer.target_adapter.parameters()))


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(adapter, trained, tmp_path):
    adapter_trainer(trained, tmp_path / "straight", adapter, steps=4).run()
    adapter_trainer(trained, tmp_path / "resumed", adapter, steps=2).run()
    resumed = adapter_trainer(trained, tmp_path / "resumed", adapter, steps=4)
    assert resumed.step == 2
    resumed.run()
    straight, again = (load_file(tmp_path / run / FILES[adapter]) for run in ("straight", "resumed"))
    assert straight.keys() == again.keys()
    assert all(torch.equal(straight[k], again[k]) for k in straight)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_starts_from_an_existing_one(adapter, trained, tmp_path):
    """From an adapter trained for the teacher: the online and the target adapter both hold its weights."""
    adapter_trainer(trained, tmp_path / "teacher", adapter, "teacher_adapter").run()
    given = tmp_path / "teacher" / FILES[adapter]
    trainer = Trainer(config("adapter", tmp_path / "adapted", {**stage_models(trained, "adapter"),
                                                                "adapter": str(given)}, adapter=adapter))
    weights = read_state_dict(str(given))
    ours = trainer.adapter.file_weights()
    shared = [k for k in ours if k in weights]
    assert len(shared) == len(ours)
    assert all(torch.equal(ours[k], weights[k].float()) for k in shared)
    target = trainer.target_adapter.file_weights()
    assert all(torch.equal(target[k], ours[k]) for k in ours)


def test_gradient_checkpointing_gives_the_same_gradients(trained, tmp_path):
    runs = []
    for checkpointing in (False, True):
        trainer = adapter_trainer(trained, tmp_path / str(checkpointing), "layout",
                                  gradient_checkpointing=checkpointing)
        trainer.loss(*trainer.batch()).backward()
        runs.append([p.grad.clone() for p in trainer.online.parameters() if p.requires_grad])
    assert any(g.abs().max() > 0 for g in runs[0])
    for plain, checkpointed in zip(*runs):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-4, atol=1e-7)


def test_the_files_are_a_controlnet_and_an_i2v_motion_module(trained, tmp_path):
    for adapter in ADAPTERS:
        adapter_trainer(trained, tmp_path / adapter, adapter, steps=1).run()
    controlnet = load_file(tmp_path / "layout" / CONTROLNET_FILE)
    assert controlnet and all(k.startswith(CONTROLNET_PREFIX) for k in controlnet)
    assert {f"{CONTROLNET_PREFIX}zero_convs.0.0.weight", f"{CONTROLNET_PREFIX}input_hint_block.0.weight",
            f"{CONTROLNET_PREFIX}middle_block_out.0.weight"} <= controlnet.keys()
    loaded = load_motion_model_file(str(tmp_path / "image" / I2V_FILE), I2V_FILE).loaded
    assert loaded.format.kind == "animatelcm_i2v" and loaded.format.image_channels == 3
    student = load_file(stage_models(trained, "adapter")["motion_module"])
    i2v = load_file(tmp_path / "image" / I2V_FILE)
    assert all(torch.equal(i2v[k], v) for k, v in student.items())  # the student's motion module, unchanged
    assert not (tmp_path / "image" / MOTION_FILE).exists()


def test_the_layout_hint_is_the_shape_mask_at_eight_times_the_model_size():
    clips = MovingShapes(frames=2, size=16).sample(3, torch.Generator().manual_seed(0))
    hint = layout_hint(clips.videos, side=8)
    assert hint.shape == (3, 2, 3, 8 * HINT_SCALE, 8 * HINT_SCALE)
    mask = (clips.videos != -1).any(dim=2).float()
    torch.testing.assert_close(hint[:, :, 0, ::4, ::4], mask)
    edges = layout_hint(clips.videos, side=8, edges=True)
    assert edges.shape == hint.shape and 0 < edges.mean() < hint.mean()  # outlines: fewer pixels than the masks

"""Smoke tests of every training stage on tiny shapes: the loss is finite and goes down on a fixed batch, the EMA
targets and the paper's LoRA-into-target schedule behave as specified, runs resume exactly, and the files load with
the pack's loaders."""

import math

import pytest
import torch
from safetensors.torch import load_file

import comfy.lora
import comfy.supported_models

from animatelcm.motion_models.checkpoint import read_state_dict
from animatelcm.patching.motion_injection import load_motion_model_file
from animatelcm.devkit.comfy import model_patcher
from animatelcm.training.consistency import noise_loss_weights
from animatelcm.training.models import TINY_UNET, new_unet
from animatelcm.training.trainer import LORA_FILE, MOTION_FILE, Trainer, learning_rate_factor, read_motion_model

from .conftest import SIZE, config, stage_models

STAGES = ["teacher_image", "teacher_motion", "image", "motion", "direct"]


def lora_layers(trainer):
    """(layer, its update) for every LoRA'd layer of the trainer's UNet."""
    return [(module, module.parametrizations.weight[0]) for module in trainer.backbone.unet.modules()
            if hasattr(module, "parametrizations")]


@pytest.mark.parametrize("stage", STAGES)
def test_the_loss_is_finite_and_goes_down_on_a_fixed_batch(stage, trained, tmp_path):
    rate = 5e-3 if stage == "image" else 2e-3  # a rank-4 LoRA alone moves slowly; motion modules diverge at 5e-3
    trainer = Trainer(config(stage, tmp_path, stage_models(trained, stage), learning_rate=rate, ema_decay=0.5))
    state = trainer.generator.get_state()
    losses = []
    for _ in range(8):
        trainer.generator.set_state(state)  # the same clips, noise, timesteps and guidance scales every step
        losses.append(trainer.train_step())
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_stage2_target_starts_without_the_lora_and_takes_it_in_through_the_ema(trained, tmp_path):
    decay = 0.8
    trainer = Trainer(config("motion", tmp_path, stage_models(trained, "motion"), init="paper", ema_decay=decay))
    layers = lora_layers(trainer)
    originals = [layer.parametrizations.weight.original.detach().clone() for layer, _ in layers]
    merged = []
    with trainer.lora.applied(1.0):  # the online model: base + LoRA, from step 0
        for layer, _ in layers:
            merged.append(layer.weight.detach().clone())
    assert any(not torch.equal(m, o) for m, o in zip(merged, originals))  # the stage-1 LoRA is not a no-op
    with trainer._target_lora():  # the target at step 0: exactly the weights without the LoRA
        for (layer, _), original in zip(layers, originals):
            assert torch.equal(layer.weight, original)

    ema = [o.clone() for o in originals]  # an EMA of full weights, done the long way
    for step in range(1, 4):
        trainer.train_step()
        ema = [decay * e + (1 - decay) * m for e, m in zip(ema, merged)]
        assert trainer.lora_scale == pytest.approx(1 - decay ** step, abs=1e-12)
        with trainer._target_lora():
            for (layer, _), expected in zip(layers, ema):
                torch.testing.assert_close(layer.weight, expected, rtol=0, atol=1e-6)
        with trainer.lora.applied(1.0):  # the online spatial weights stay frozen
            for (layer, _), expected in zip(layers, merged):
                assert torch.equal(layer.weight, expected)


def test_stage2_with_the_lora_merged_into_both_starts_with_equal_weights(trained, tmp_path):
    trainer = Trainer(config("motion", tmp_path, stage_models(trained, "motion"), init="merged"))
    with trainer.lora.applied(1.0):
        online = [layer.weight.detach().clone() for layer, _ in lora_layers(trainer)]
    with trainer._target_lora():
        assert all(torch.equal(layer.weight, o) for (layer, _), o in zip(lora_layers(trainer), online))


def test_a_given_lora_loads_with_its_own_rank_whatever_the_config_names(trained, tmp_path):
    trainer = Trainer(config("motion", tmp_path, {**stage_models(trained, "motion"), "lora_rank": 16}))
    given, loaded = load_file(str(trained["lora"])), trainer.lora.state_dict()
    assert given.keys() == loaded.keys() and all(torch.equal(given[k], loaded[k]) for k in given)  # rank 4, as saved


@pytest.mark.parametrize("stage", ["teacher_motion", "motion", "direct"])
@pytest.mark.parametrize("motion_init", ["zero", "teacher"])
def test_motion_init_teacher_starts_from_the_given_motion_module(stage, motion_init, trained, tmp_path):
    """Stage 2 and direct may start from the teacher's motion module, and a motion teacher may be trained on from a
    given one (the centre proof's warm restarts: fresh step count and schedule)."""
    models = {**stage_models(trained, stage), "teacher_motion_module": str(trained["teacher_motion"])}
    trainer = Trainer(config(stage, tmp_path, models, motion_init=motion_init))
    given = read_motion_model(str(trained["teacher_motion"]), torch.device("cpu")).state_dict()
    online = trainer.motion.state_dict()
    assert set(online) <= set(given)  # a student's motion module keeps no positional table (the teacher's has one)
    same = [torch.equal(online[key], given[key]) for key in online]
    assert all(same) if motion_init == "teacher" else not all(same)
    if trainer.target_motion is not None:
        target = trainer.target_motion.state_dict()
        assert all(torch.equal(target[key], online[key]) for key in online)
    assert trainer.step == 0 and trainer.scheduler.last_epoch == 0


def test_motion_and_lora_targets_are_the_ema_of_the_online_weights(trained, tmp_path):
    decay = 0.7
    trainer = Trainer(config("direct", tmp_path, stage_models(trained, "direct"), ema_decay=decay))
    online = lambda: [p.detach().clone() for p in trainer.motion.parameters()]  # noqa: E731
    target = lambda: [p.detach().clone() for p in trainer.target_motion.parameters()]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(online(), target()))  # the target starts as the online model
    factors = lambda: [p.detach().clone() for p in trainer.lora.parameters()]  # noqa: E731
    ema_motion, ema_lora = target(), factors()
    for _ in range(2):
        trainer.train_step()
        ema_motion = [decay * e + (1 - decay) * o for e, o in zip(ema_motion, online())]
        ema_lora = [decay * e + (1 - decay) * o for e, o in zip(ema_lora, factors())]
    for expected, found in zip(ema_motion, target()):
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-6)
    ema_factors = [b for u in trainer.lora.updates.values() for b in (u.ema_down, u.ema_up)]
    for expected, found in zip(ema_lora, ema_factors):
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(online(), target()))


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(trained, tmp_path):
    models = stage_models(trained, "motion")
    Trainer(config("motion", tmp_path / "straight", models, steps=4)).run()
    Trainer(config("motion", tmp_path / "resumed", models, steps=2)).run()
    resumed = Trainer(config("motion", tmp_path / "resumed", models, steps=4))
    assert resumed.step == 2 and resumed.lora_scale == pytest.approx(1 - 0.95 ** 2)
    resumed.run()
    straight, again = (load_file(tmp_path / run / MOTION_FILE) for run in ("straight", "resumed"))
    assert straight.keys() == again.keys()
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_the_motion_modules_load_with_the_pack_loader_in_their_released_layouts(trained, tmp_path):
    Trainer(config("motion", tmp_path, stage_models(trained, "motion"))).run()
    student = load_motion_model_file(str(tmp_path / MOTION_FILE), MOTION_FILE)
    assert student.loaded.format.kind == "animatelcm_t2v" and student.is_animatelcm
    assert student.loaded.format.width == (64, 64, 64, 64) and student.loaded.format.has_mid_block
    saved = read_state_dict(tmp_path / MOTION_FILE)
    assert len(saved) == 546 and not any("pos_encoder" in k for k in saved)  # AnimateLCM-T2V: 546 tensors, no PE
    assert all(torch.equal(saved[k], v) for k, v in student.loaded.model.state_dict().items())

    teacher = load_motion_model_file(str(trained["teacher_motion"]), "teacher.safetensors")
    assert teacher.loaded.format.kind == "animatediff_v2_v3"  # an ordinary diffusion motion module


def test_the_lora_file_has_a_key_for_every_layer_comfyui_maps(trained):
    weights = load_file(trained["lora"])
    model = model_patcher(comfy.supported_models.SD15(dict(TINY_UNET, image_size=SIZE)),
                          {k[5:]: v for k, v in load_file(trained["base"]).items() if k.startswith("unet.")})
    patches = comfy.lora.load_lora(weights, comfy.lora.model_lora_keys_unet(model.model, {}))
    assert len(patches) * 3 == len(weights)  # down, up, alpha of each: every key used
    assert all(key.endswith(".weight") and "transformer_blocks" in key or ".proj_" in key for key in patches)


def test_samples_and_state_are_written(trained, tmp_path):
    trainer = Trainer(config("direct", tmp_path, stage_models(trained, "direct")))
    trainer.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", LORA_FILE, MOTION_FILE, "samples",
                                                          "state.pt"]
    videos = list((tmp_path / "samples").iterdir())
    assert [v.suffix for v in videos] == [".mp4"] and videos[0].stat().st_size > 0
    assert not list(tmp_path.glob("*.partial"))


def test_a_folder_of_captioned_videos_is_training_data(tmp_path):
    import numpy as np

    from animatelcm.video.writer import VideoSettings, write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    frames = np.zeros((6, 24, 24, 3), dtype=np.uint8)
    frames[:, 8:16, 8:16, 0] = 255
    write_video(str(videos / "red.mp4"), iter(frames), VideoSettings(format="mp4"))
    (videos / "red.txt").write_text("a red square moving left")
    run = config("teacher_image", tmp_path / "run")
    run.data.kind, run.data.path = "folder", str(videos)
    trainer = Trainer(run)
    x0, captions, condition = trainer.batch()
    assert captions == ["a red square moving left"] * 2 and x0.shape == (2, 1, 3, SIZE, SIZE)
    assert condition is None  # no adapter: nothing conditions the model
    assert math.isfinite(trainer.train_step())


@pytest.mark.parametrize("stage", ["teacher_image", "image", "motion"])
def test_gradient_checkpointing_gives_the_same_gradients(stage, trained, tmp_path):
    runs, calls = [], []
    for checkpointing in (False, True):
        trainer = Trainer(config(stage, tmp_path / str(checkpointing), stage_models(trained, stage),
                                 gradient_checkpointing=checkpointing))
        count = []
        if trainer.motion is not None:  # the online motion model's first module runs again in backward
            trainer.motion.in_unet_order()[0][1].register_forward_pre_hook(lambda *_: count.append(1))
        trainer.loss(*trainer.batch()).backward()  # the same seed: the same batch, noise and timesteps
        runs.append([p.grad.clone() for p in trainer.online.parameters() if p.requires_grad])
        calls.append(len(count))
    assert any(g.abs().max() > 0 for g in runs[0])
    assert calls == ([1, 2] if stage == "motion" else [0, 0])
    for plain, checkpointed in zip(*runs):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-4, atol=1e-7)


def test_min_snr_weighting_lowers_the_weight_of_low_noise_timesteps_only(trained, tmp_path):
    losses = {}
    for gamma in (0.0, 5.0, 1e9):
        trainer = Trainer(config("teacher_motion", tmp_path / str(gamma), stage_models(trained, "teacher_motion"),
                                 min_snr_gamma=gamma, batch_size=32))
        with torch.no_grad():  # the same seed: the same batch, noise and timesteps
            losses[gamma] = trainer.loss(*trainer.batch()).item()
    assert 0 < losses[5.0] < losses[0.0]  # weights min(SNR, 5) / SNR: below 1 where SNR > 5
    assert losses[1e9] == pytest.approx(losses[0.0], rel=1e-6)  # a gamma above every SNR weighs nothing down


def test_v_weighting_weighs_each_sample_as_noise_loss_weights_says(trained, tmp_path, monkeypatch):
    import animatelcm.training.trainer as trainer_module

    trainer = Trainer(config("teacher_motion", tmp_path, stage_models(trained, "teacher_motion"),
                             v_weighting=True, batch_size=2))
    state, seen = trainer.generator.get_state(), {}

    def loss_with(weights):  # the same batch, noise and timesteps each time
        monkeypatch.setattr(trainer_module, "noise_loss_weights", weights)
        trainer.generator.set_state(state)
        with torch.no_grad():
            return trainer.loss(*trainer.batch()).item()

    def spy(alphas_cumprod, t, min_snr_gamma, v):
        seen.update(t=t, v=v)
        return noise_loss_weights(alphas_cumprod, t, min_snr_gamma, v)

    weighted = loss_with(spy)
    first, second = (loss_with(lambda _a, t, *_: torch.eye(2)[i] * 2) for i in (0, 1))  # each sample's plain MSE
    assert seen["v"] is True
    w = noise_loss_weights(trainer.alphas_cumprod, seen["t"], v=True)
    assert weighted == pytest.approx((first * w[0].item() + second * w[1].item()) / 2, rel=1e-5)


def test_the_cosine_schedule_warms_up_then_decays_to_zero_at_the_last_step(trained, tmp_path):
    trainer = Trainer(config("teacher_motion", tmp_path, stage_models(trained, "teacher_motion"), steps=10,
                             warmup_steps=2, lr_schedule="cosine"))
    rates = []
    for _ in range(10):
        rates.append(trainer.scheduler.get_last_lr()[0])
        trainer.scheduler.step()
    assert rates[:3] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert rates[3] < 1e-3 and all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_factor(9, warmup=2, steps=10, schedule="constant") == 1.0


def test_the_tiny_unet_can_move_each_output_channels_mean_with_its_input():
    """A 32-channel UNet's output GroupNorm(32) normalises every channel alone, which leaves its output's per-channel
    mean nearly blind to the input's (the first proof run's colour casts); 64 channels pair them up."""
    def sensitivity(config):
        torch.manual_seed(0)
        unet = new_unet(dict(config, image_size=16))
        for p in unet.out.parameters():
            torch.nn.init.normal_(p, std=0.1)
        x, t, c = torch.randn(8, 3, 16, 16), torch.full((8,), 999), torch.randn(8, 4, TINY_UNET["context_dim"])
        shift = torch.tensor([0.5, 0.0, 0.0])[None, :, None, None]
        with torch.no_grad():
            return (unet(x + shift, t, context=c) - unet(x, t, context=c)).mean(dim=(2, 3)).abs().max().item()

    assert sensitivity(TINY_UNET) > 5 * sensitivity(dict(TINY_UNET, model_channels=32, channel_mult=[1, 2, 2, 2]))

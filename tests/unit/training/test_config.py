"""Training configs: TOML plus command-line overrides; mistakes are refused with the setting's name and the fix."""

import pytest

from animatelcm.training.config import Config

BASE = "[model]\nbase = \"base.safetensors\"\n"


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_a_file_and_overrides_give_the_settings(tmp_path):
    config = Config.load(write(tmp_path, BASE + "[train]\nstage = \"image\"\nsteps = 7\n"),
                         ["train.steps=9", "output.dir=\"runs/x\"", "train.guidance=[0.5, 1.5]"])
    assert (config.train.stage, config.train.steps, config.output.dir) == ("image", 9, "runs/x")
    assert config.train.guidance == [0.5, 1.5] and config.train.skip == 10 and config.train.ema_decay == 0.95


@pytest.mark.parametrize("text, overrides, message", [
    (BASE + "[train]\nstpes = 3\n", [], r"unknown setting train\.stpes"),
    (BASE + "[trian]\nsteps = 3\n", [], r"unknown config section \[trian\]"),
    (BASE, ["train.stage=\"stage3\""], "train.stage must be one of"),
    ("", ["train.stage=\"image\""], "stage image needs model.base"),
    (BASE, ["train.stage=\"motion\""], "needs model.teacher_motion_module"),
    (BASE + "teacher_motion_module = \"t.safetensors\"\n", ["train.stage=\"motion\""], "needs model.lora"),
    (BASE, ["train.stage=\"teacher_motion\"", "train.motion_init=\"teacher\""], "the motion module to start from"),
    (BASE + "lora = \"l.safetensors\"\n", ["train.stage=\"adapter\""], "needs model.motion_module"),
    (BASE + "lora = \"l.safetensors\"\nmotion_module = \"m.ckpt\"\n", ["train.stage=\"adapter\"",
                                                                      "train.adapter=\"depth\""],
     "train.adapter must be one of"),
    (BASE + "adapter = \"c.safetensors\"\n", ["train.stage=\"image\""], "model.adapter is for the adapter stages"),
    (BASE, ["train.skip=30"], "train.skip must divide 1000"),
    (BASE, ["train.guidance=[2.0, 1.0]"], "0 <= low <= high"),
    (BASE, ["train.init=\"both\""], "'paper' or 'merged'"),
    (BASE, ["train.lr_schedule=\"linear\""], "'constant' or 'cosine'"),
    (BASE, ["model.backbone=\"sd15\"", "train.stage=\"teacher_image\""], "already an image teacher"),
    (BASE, ["steps=3"], "expected section.key=value"),
    (BASE, ["model.patch=3", "data.size=32"], r"data.size \(32\) must be a multiple of model.patch \(3\)"),
    (BASE, ["model.backbone=\"sd15\"", "model.patch=2"], "model.patch is for the tiny backbone"),
    (BASE, ["data.start=\"middle\""], "data.start must be one of"),
    (BASE, ["train.v_weighting=true", "train.min_snr_gamma=5.0"], "two loss weightings: set one"),
])
def test_mistakes_are_refused_with_the_reason(tmp_path, text, overrides, message):
    with pytest.raises(ValueError, match=message):
        Config.load(write(tmp_path, text), overrides)


@pytest.mark.parametrize("name", ["sd15_stage1_image", "sd15_stage2_motion", "sd15_direct", "sd15_adapter_controlnet",
                                  "sd15_adapter_i2v"])
def test_the_shipped_example_configs_are_valid(name):
    from pathlib import Path

    config = Config.load(Path(__file__).parents[3] / "training" / "configs" / f"{name}.toml")
    assert config.model.backbone == "sd15" and config.data.size == 512 and config.train.mixed_precision == "fp16"

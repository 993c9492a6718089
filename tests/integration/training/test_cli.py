"""The command line: a TOML config trains a stage; torchrun runs it as two DDP processes (gloo on the CPU)."""

import json
import os
import subprocess
import sys

import pytest

from animatelcm.devkit.comfy import ROOT, comfyui_path

TOML = """
[model]
backbone = "tiny"
{base}
lora_rank = 4

[data]
frames = 4
size = 16

[train]
stage = "{stage}"
steps = 2
batch_size = 2

[output]
dir = "{out}"
sample_captions = ["a blue circle moving down"]
"""


def train(tmp_path, stage, base=None, launcher=()):
    config = tmp_path / f"{stage}.toml"
    out = tmp_path / stage
    config.write_text(TOML.format(stage=stage, out=out, base=f'base = "{base}"' if base else ""))
    env = dict(os.environ, COMFYUI_PATH=str(comfyui_path()), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, *launcher, str(ROOT / "scripts" / "train.py"), "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="module")
def teacher_image(tmp_path_factory):
    """One teacher_image run from a config file: its report is tested, and its base model starts the DDP run."""
    return train(tmp_path_factory.mktemp("cli"), "teacher_image")


def test_a_config_file_trains_a_stage_and_reports_it(teacher_image):
    out, result = teacher_image
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == 2 and report["samples_per_second"] > 0
    assert (out / "base.safetensors").is_file() and (out / "state.pt").is_file()
    assert "teacher_image: 2 steps" in result.stderr and "over 1 process(es)" in result.stderr


def test_torchrun_trains_with_two_ddp_processes(tmp_path, teacher_image):
    out, _ = teacher_image
    run, result = train(tmp_path, "image", base=out / "base.safetensors",
                        launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    assert "over 2 process(es)" in result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])  # rank 0 only: one report, one set of files
    assert report["steps"] == 2
    assert (run / "lora.safetensors").is_file()


def test_a_bad_setting_stops_with_the_reason_before_any_work(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[train]\nstage = "image"\n')
    env = dict(os.environ, COMFYUI_PATH=str(comfyui_path()))
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode != 0 and "stage image needs model.base" in result.stderr



@pytest.mark.parametrize("adapter", ["layout", "image"])
def test_torchrun_trains_an_adapter_with_two_ddp_processes(tmp_path, adapter):
    """Teacher-free adaptation on an SD1.5 student (real layouts, 320 channels at every level)."""
    from animatelcm.devkit import motion_modules as mm
    from animatelcm.devkit.lora import lora_file
    from animatelcm.devkit.sd15_checkpoint import checkpoint_file
    from animatelcm.devkit.training import adapter_config_file

    mult = (1, 1, 1, 1)
    config = adapter_config_file(tmp_path / "adapter.toml", checkpoint_file(channel_mult=mult),
                                 lora_file(channel_mult=mult), mm.motion_module_file("animatelcm_t2v", (320,) * 4),
                                 adapter, tmp_path / "run")
    env = dict(os.environ, COMFYUI_PATH=str(comfyui_path()), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(ROOT / "scripts" / "train.py"), "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "over 2 process(es)" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 2
    written = {"layout": "controlnet.safetensors", "image": "i2v_motion_module.safetensors"}[adapter]
    assert (tmp_path / "run" / written).is_file()

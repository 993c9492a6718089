"""The README's main job (scripts/main_job.py): real files placed under their official names are used, and a
second run never overwrites the first video."""

import subprocess
import sys

import av

from animatelcm.devkit.comfy import ROOT

from .conftest import CHECKPOINT, LORA, MOTION_MODEL, SIZE, sd15_models


def test_main_job_uses_placed_files_and_keeps_every_video(server, tmp_path):
    server.free()  # the main job starts servers of its own: the shared one lets go of its models for them
    models = tmp_path / "models"
    files = sd15_models()
    for folder, name, source in [("checkpoints", "my_sd15.safetensors", files["checkpoints"][CHECKPOINT]),
                                 ("loras", LORA, files["loras"][LORA]),
                                 ("animatediff_models", MOTION_MODEL, files["animatediff_models"][MOTION_MODEL])]:
        (models / folder).mkdir(parents=True)
        (models / folder / name).symlink_to(source)
    command = [sys.executable, str(ROOT / "scripts" / "main_job.py"), "--models", str(models), "--checkpoint",
               "my_sd15.safetensors", "--size", str(SIZE), "--frames", "4", "--steps", "2",
               "--output", str(tmp_path / "videos")]
    for run in range(2):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "RANDOM" not in done.stdout and "step 2/2" in done.stdout
    videos = sorted((tmp_path / "videos").iterdir())
    assert [v.name for v in videos] == ["animatelcm_t2v_seed123456_001.mp4", "animatelcm_t2v_seed123456_002.mp4"]
    with av.open(str(videos[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4

"""Training configs the tests hand to scripts/train.py: teacher-free adaptation on an SD1.5 student."""

from __future__ import annotations

from pathlib import Path

ADAPTER_TOML = """
[model]
backbone = "sd15"
base = "{base}"
lora = "{lora}"
motion_module = "{motion}"
lora_rank = 8

[data]
frames = 2
size = 32

[train]
stage = "adapter"
adapter = "{adapter}"
steps = {steps}
batch_size = 1
learning_rate = {learning_rate}

[output]
dir = "{out}"
sample_steps = 1
sample_captions = ["a blue circle moving down"]
"""


def adapter_config_file(path: Path, base: Path, lora: Path, motion: Path, adapter: str, out: Path, steps: int = 2,
                        learning_rate: float = 1e-4) -> Path:
    """Writes a config for `adapter` ("layout" or "image") on the student base + lora + motion (a rank-8 LoRA, 2
    frames at 32 px) to `path`."""
    path.write_text(ADAPTER_TOML.format(base=base, lora=lora, motion=motion, adapter=adapter, out=out, steps=steps,
                                        learning_rate=learning_rate))
    return path

"""Train AnimateLCM: one stage of decoupled consistency distillation per run, driven by a TOML config.

    .dev/comfyui-0.33.0/venv/bin/python scripts/train.py --config training/configs/sd15_stage1_image.toml
    .dev/comfyui-0.33.0/venv/bin/python scripts/train.py --config my.toml \\
        --set train.steps=200 --set output.dir=\\"runs/x\\"
    torchrun --nproc_per_node 2 scripts/train.py --config my.toml      # DDP, one process per GPU

Needs ComfyUI (its SD1.5 UNet, checkpoint loader and samplers): COMFYUI_PATH, else the ComfyUI this pack is installed
in (custom_nodes/<pack>), else the development one (`make dev`). Runs resume from
output.dir/state.pt; the outputs (lora.safetensors, motion_module.safetensors) load in ComfyUI unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


BOOTSTRAP = runpy.run_path(str(ROOT / "devkit" / "bootstrap.py"))  # the pack's import and ComfyUI's whereabouts


def import_comfyui() -> None:
    """ComfyUI on the device training uses (about 10 s of imports on a CPU, so a config is checked first)."""
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # ComfyUI's loaders use the current device
    try:
        BOOTSTRAP["import_comfyui"](cpu=not torch.cuda.is_available())
    except RuntimeError as missing:
        raise SystemExit(f"{missing}; or install this pack in ComfyUI/custom_nodes") from None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TOML file with [model], [data], [train], [output] sections")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting (a TOML value: strings in quotes); repeatable")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    BOOTSTRAP["import_pack"]()  # the pack under the name `animatelcm`; its config needs no ComfyUI
    from animatelcm.training.config import Config

    try:
        config = Config.load(options.config, options.set)
    except (OSError, ValueError) as error:
        raise SystemExit(f"config: {error}") from error
    import_comfyui()
    from animatelcm.training.trainer import Trainer

    report = Trainer(config).run()
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()

"""Soak test at full size: 50 prompts of every shipped workflow (at test size) on one real ComfyUI server, every
fourth one bad, then a prompt interrupted at its second step and queued again; prints the server's memory figures.

    python3 scripts/soak.py [--prompts 50] [--workflows all] [--comfyui 0.33.0]

It runs tests/e2e/test_soak.py through the README's test command with ALCM_SOAK_PROMPTS / ALCM_SOAK_WORKFLOWS set;
the end-to-end tier runs the same test at a small size (12 prompts over three quick workflows)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=50, help="prompts in all, every fourth one bad (default 50)")
    parser.add_argument("--workflows", default="all",
                        help="shipped workflow names, comma-separated, or all (default all)")
    parser.add_argument("--comfyui", default="0.33.0", help="the ComfyUI target of `make test` (default 0.33.0)")
    opts = parser.parse_args()
    env = dict(os.environ, ALCM_SOAK_PROMPTS=str(opts.prompts), ALCM_SOAK_WORKFLOWS=opts.workflows)
    command = ["make", "-C", str(ROOT), "test", f"COMFYUI={opts.comfyui}",
               "PYTEST_ARGS=tests/e2e/test_soak.py -s -q"]
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

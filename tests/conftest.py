"""Imports the pack under the fixed name `animatelcm` (devkit/bootstrap.py says how and why) and tags tests by tier."""

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")

runpy.run_path(str(ROOT / "devkit" / "bootstrap.py"))["import_pack"]()


def pytest_report_header(config) -> str:
    """Which ComfyUI this run tests against, at the top of every run's output."""
    from animatelcm.devkit.bootstrap import comfyui_path

    try:
        path = comfyui_path()
    except RuntimeError as missing:
        return f"ComfyUI: none ({missing})"
    version = re.search(r'__version__ = "([^"]+)"', (path / "comfyui_version.py").read_text())
    return f"ComfyUI {version.group(1) if version else 'of unknown version'} at {path}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.path)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])

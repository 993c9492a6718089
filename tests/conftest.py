"""Imports the pack under the fixed name `animatelcm`, whatever its folder is called, and tags tests by tier.

The pack folder is itself the package ComfyUI imports (the folder name may contain a hyphen), so tests reach it
through an import spec on the folder instead of putting the repository on sys.path: a top-level `nodes` there would
shadow ComfyUI's own `nodes` module.
"""

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "animatelcm"
TIERS = ("unit", "integration", "e2e")


def _import_pack() -> None:
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)


_import_pack()


def pytest_report_header(config) -> str:
    """Which ComfyUI this run tests against, at the top of every run's output."""
    from animatelcm.tests.fixtures.comfy import comfyui_path

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

"""How every development entry point (tests, scripts, benchmarks) imports the pack and finds ComfyUI: once, here.

It runs before the pack is importable, so it stands alone (standard library only) and entry points load it by path:

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "devkit" / "bootstrap.py"))["import_pack"]()

The pack folder is itself the package ComfyUI imports (its name may contain a hyphen), so it is imported through an
import spec on the folder under the fixed name `animatelcm`, never by putting the repository on sys.path: the
pack's `nodes` package would shadow ComfyUI's `nodes` module.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "animatelcm"
DEFAULT_TARGET = "0.33.0"  # scripts/dev_env.sh's default ComfyUI target


def import_pack():
    """The pack as `animatelcm` (once per process)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def comfyui_path() -> Path:
    """The ComfyUI to run against: `COMFYUI_PATH`; else the ComfyUI whose custom_nodes holds this pack (a user's
    install); else the one `make dev` built for the target `ALCM_COMFYUI` (0.33.0 unless set)."""
    if os.environ.get("COMFYUI_PATH"):
        path = Path(os.environ["COMFYUI_PATH"])
    elif ROOT.parent.name == "custom_nodes":
        path = ROOT.parents[1]
    else:
        target = os.environ.get("ALCM_COMFYUI", DEFAULT_TARGET)
        path = Path(os.environ.get("ALCM_DEV_DIR", ROOT / ".dev")) / f"comfyui-{target}" / "ComfyUI"
    if not (path / "main.py").is_file():
        raise RuntimeError(f"no ComfyUI at {path}: run `make dev` (COMFYUI=0.33.0 or 0.3.75), or set COMFYUI_PATH to "
                           f"an existing ComfyUI folder")
    return path.resolve()


def import_comfyui(cpu: bool) -> Path:
    """ComfyUI importable in this process, on the CPU or its default device (it reads its arguments at import)."""
    path = comfyui_path()
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    from comfy.cli_args import args

    args.cpu = cpu
    import comfy.model_management  # noqa: F401  (picks the device from args, once)

    return path

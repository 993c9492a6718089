"""Checks the pack's layering from the source alone (no import runs): which top-level folder may import which, that
the pure layers import no ComfyUI, and that no two modules import each other in a cycle.

    python3 scripts/check_layers.py          # exit status 1, with one line per problem, when a rule is broken

CI runs it (.ci/run). The layers, bottom up: motion_models/, samplers/, video/ and cli/ (pure: PyTorch, PyAV, the
standard library); patching/ (ComfyUI integration machinery); nodes/ (node classes); training/; devkit/ (what
tests, scripts and benchmarks share); then benchmarks/, scripts/ and tests/, which nothing else imports.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PURE = {"motion_models", "samplers", "video", "cli"}
# What each folder may import from the pack, besides itself.
ALLOWED = {
    **{layer: set() for layer in PURE},
    "patching": {"motion_models", "samplers", "video"},
    "nodes": {"patching", "motion_models", "samplers", "video"},
    "training": {"patching", "motion_models", "samplers", "video"},
    # the development kit: how to import the pack and find ComfyUI, generated weights, the server and browser harness
    "devkit": {"nodes", "patching", "motion_models", "samplers", "video", "training", "cli"},
    "benchmarks": {"patching", "motion_models", "samplers", "video", "training", "devkit"},
    "scripts": {"patching", "motion_models", "samplers", "video", "training", "cli", "devkit"},
    "tests": {"nodes", "patching", "motion_models", "samplers", "video", "training", "cli", "scripts", "benchmarks",
              "devkit"},
    "(root)": {"nodes"},  # __init__.py: the entry point ComfyUI calls
}
COMFYUI = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "latent_preview", "execution",
           "nodes", "server", "node_helpers"}


def modules() -> dict[str, Path]:
    """Dotted module name (relative to the pack) -> file, for every Python file of the pack."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith("."):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> tuple[set[str], set[str], set[str]]:
    """(pack modules, of those the ones imported when the module loads, outside top-level modules) that `name`
    imports; an import inside a function runs only when it is called."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    pack, at_load, outside = set(), set(), set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for inner in ast.walk(node)}
    deferred = {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
            continue
        found = set()
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            candidates = [".".join(target + [alias.name]) for alias in node.names] + [".".join(target)]
            found.update(c for c in candidates if c in known)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for full in names:
                if full.startswith("animatelcm."):
                    target = full.split(".")[1:]
                    extra = [".".join(target + [a.name]) for a in node.names] \
                        if isinstance(node, ast.ImportFrom) else []
                    found.update(c for c in extra + [".".join(target)] if c in known)
                else:
                    outside.add(full.split(".")[0])
        pack |= found
        if id(node) not in deferred:
            at_load |= found
    return pack, at_load, outside


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def layer(name: str, path: Path) -> str:
    return name.split(".")[0] if "." in name or path.name == "__init__.py" and name else "(root)"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules when they load (imports inside functions are left out: they run later)."""
    found, state, stack = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def main() -> int:
    known = modules()
    problems, graph = [], {}
    for name, path in known.items():
        own = layer(name, path)
        pack, at_load, outside = imports(name, path, known)
        # A package's __init__ is imported with any of its modules: only real dependencies count for cycles.
        graph[name] = {m for m in at_load if not (name and m.startswith(name + "."))}
        for target in sorted(pack):
            other = target.split(".")[0] if target else "(root)"
            if other != own and other not in ALLOWED.get(own, set()):
                problems.append(f"{path.relative_to(ROOT)}: {own}/ must not import {target} ({other}/)")
        if own in PURE and outside & COMFYUI:
            problems.append(f"{path.relative_to(ROOT)}: {own}/ is pure but imports ComfyUI's "
                            f"{', '.join(sorted(outside & COMFYUI))}")
    for cycle in cycles(graph):
        problems.append("import cycle: " + " -> ".join(cycle))
    for problem in problems:
        print(problem)
    print(f"{len(known)} modules checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

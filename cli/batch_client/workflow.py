"""API-format workflows: reading one, naming its inputs (`node-id/input-name`), finding the ones that matter (the
prompt text, the seed, any input by name) and overriding them in a copy. Pure: no network."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SEED_INPUTS = ("seed", "noise_seed")
PROMPT_INPUT = "text"

Target = tuple[str, str]  # (node id, input name) of the workflow


class UsageError(ValueError):
    """A problem with the command line, its files or the workflow: found before anything is queued (exit code 2)."""


def parse_value(text: str) -> Any:
    """A value from the command line or a CSV cell: JSON when it parses (numbers, true, "quoted", [lists]), else the
    text itself, so prompts need no quoting but `"42"` still gives the string 42."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_target(text: str, what: str = "input") -> Target:
    """`node-id/input-name` as a pair; the node id is the key of the node in the API-format workflow."""
    node, sep, name = text.strip().partition("/")
    if not sep or not node.strip() or not name.strip():
        raise UsageError(f"{what} {text!r} must be written node-id/input-name, e.g. 7/width")
    return node.strip(), name.strip()


def read_text(path: Path, what: str) -> str:
    """A file the user named, as text (a BOM left by an editor dropped), or a UsageError saying which one."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {what} {path}: {error}") from None


def load_workflow(path: Path) -> dict:
    """An API-format workflow file, checked, or a UsageError: nothing is queued from a file that cannot be one."""
    try:
        workflow = json.loads(read_text(path, "the workflow"))
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"the workflow {path} is not JSON: {error}") from None
    check_api_format(workflow, f"the workflow {path}")
    return workflow


def check_api_format(workflow: Any, name: str = "workflow") -> None:
    """The server's /prompt takes only the API format; the UI format (what Save writes) has nodes and links."""
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise UsageError(f"{name} is a UI-format workflow (it has 'nodes' and 'links'); the server needs the API "
                         "format: in ComfyUI use Workflow > Export (API) and pass that file")
    if not isinstance(workflow, dict) or not workflow:
        raise UsageError(f"{name} is not an API-format workflow (a JSON object of node-id: {{class_type, inputs}})")
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs"), dict):
            raise UsageError(f"{name}: node {node_id!r} has no class_type and inputs: not an API-format workflow")


def check_target(workflow: dict, target: Target, what: str) -> None:
    """Reject an override of a node or input the workflow lacks: the server would ignore it silently (input) or fail
    the job late (node), and a typo would go unnoticed across a whole batch."""
    node_id, name = target
    if node_id not in workflow:
        raise UsageError(f"{what}: the workflow has no node {node_id!r} (its nodes: {', '.join(workflow)})")
    inputs = workflow[node_id]["inputs"]
    if name not in inputs:
        raise UsageError(f"{what}: node {node_id} ({workflow[node_id]['class_type']}) has no input {name!r} "
                         f"(its inputs: {', '.join(inputs)})")


def apply_overrides(workflow: dict, overrides: dict[Target, Any]) -> dict:
    """A deep copy of the workflow with the given inputs replaced; the original stays untouched for the next job."""
    result = copy.deepcopy(workflow)
    for target, value in overrides.items():
        check_target(result, target, f"override {'/'.join(target)}")
        result[target[0]]["inputs"][target[1]] = value
    return result


def is_link(value: Any) -> bool:
    """API format writes a connection as [source node id, output index]."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def inputs_named(workflow: dict, name: str, class_type: str | None = None) -> list[Target]:
    """The literal (not linked) inputs called `name`, of the nodes of `class_type` when given, in workflow order: how
    a script finds what to set by meaning, since node ids differ from one workflow to the next."""
    return [(node_id, name) for node_id, node in workflow.items()
            if (class_type is None or node["class_type"] == class_type)
            and name in node["inputs"] and not is_link(node["inputs"][name])]


def single_input(workflow: dict, name: str, class_type: str | None = None) -> Target:
    """The one input inputs_named finds; an error when there is none or several, since a guess would set the wrong
    node."""
    found = inputs_named(workflow, name, class_type)
    if len(found) != 1:
        where = f"found {', '.join('/'.join(target) for target in found)}" if found else "found none"
        of = f" of a {class_type} node" if class_type else ""
        raise UsageError(f"cannot tell which {name!r} input{of} to set ({where})")
    return found[0]


def _text_nodes_upstream(workflow: dict, node_id: str, seen: set[str]) -> set[str]:
    """Nodes with a literal `text` input reached from a conditioning input, following `positive` only when a node
    has one (ControlNet-style nodes also take the negative) and `conditioning*` inputs otherwise (combine nodes)."""
    if node_id in seen or node_id not in workflow:
        return set()
    seen.add(node_id)
    inputs = workflow[node_id]["inputs"]
    if isinstance(inputs.get(PROMPT_INPUT), str):
        return {node_id}
    if is_link(inputs.get("positive")):
        links = [inputs["positive"]]
    else:
        links = [value for name, value in inputs.items() if name.startswith("conditioning") and is_link(value)]
    return set().union(*(_text_nodes_upstream(workflow, link[0], seen) for link in links))


def detect_prompt_target(workflow: dict) -> Target:
    """The text input of the text encoder feeding the samplers' `positive` input; an error when there is none or more
    than one, since guessing would put the prompts in the wrong place."""
    found = set()
    for node in workflow.values():
        if is_link(node["inputs"].get("positive")):
            found |= _text_nodes_upstream(workflow, node["inputs"]["positive"][0], set())
    if len(found) != 1:
        where = f"found {len(found)}: {', '.join(sorted(found))}" if found else "found none"
        raise UsageError(f"cannot tell where the prompt text goes (looked for the text encoder on a sampler's "
                         f"positive input, {where}); name it with --prompt-node NODE-ID[/INPUT]")
    return found.pop(), PROMPT_INPUT


def detect_seed_target(workflow: dict) -> Target:
    """The one literal `seed`/`noise_seed` input (samplers, RandomNoise); an error when there is none or several."""
    found = [(node_id, name) for node_id, node in workflow.items() for name in SEED_INPUTS
             if isinstance(node["inputs"].get(name), int) and not isinstance(node["inputs"][name], bool)]
    if len(found) != 1:
        where = f"found {', '.join('/'.join(t) for t in found)}" if found else "found none"
        raise UsageError(f"cannot tell where the seed goes (looked for a seed or noise_seed input, {where}); "
                         "name it with --seed-node NODE-ID[/INPUT]")
    return found[0]


def resolve_target(workflow: dict, spec: str | None, what: str, default_inputs: tuple[str, ...], detect) -> Target:
    """The override target for prompts or seeds: `--prompt-node`/`--seed-node` as given (the input name may be left
    out when the node has one of the usual ones), else detected from the graph."""
    if spec is None:
        return detect(workflow)
    if "/" in spec:
        target = parse_target(spec, what)
    else:
        node = workflow.get(spec.strip())
        names = [name for name in default_inputs if node is not None and name in node["inputs"]]
        target = (spec.strip(), names[0] if names else default_inputs[0])
    check_target(workflow, target, what)
    return target


def combo_options(spec: Any) -> list | None:
    """The choices of an `/object_info` input spec when it is a list to choose from (old style: the list itself;
    COMBO style: its `options`), else None."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options")
    return None


def missing_requirements(workflow: dict, object_info: dict) -> list[str]:
    """What a server (by its `/object_info`) lacks to run the workflow: node types it does not have, and chosen
    files or options (a checkpoint, a motion model, an input video...) not among its choices."""
    problems = []
    for node_id, node in workflow.items():
        class_type = node.get("class_type")
        info = object_info.get(class_type)
        if info is None:
            problems.append(f"node {node_id} ({class_type}) is not installed")
            continue
        declared = {**info.get("input", {}).get("required", {}), **info.get("input", {}).get("optional", {})}
        for name, value in node.get("inputs", {}).items():
            options = combo_options(declared.get(name))
            if isinstance(value, str) and options is not None and value not in options:
                problems.append(f"node {node_id} ({class_type}): {name} {value!r} is not among its files or options")
    return problems

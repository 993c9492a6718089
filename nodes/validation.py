"""Checks shared by the nodes' `validate_inputs`.

ComfyUI leaves out its own min/max checks for every input a node's `validate_inputs` receives (the node is trusted
to check them), so each of ours that receives a number starts with `outside_declared_range`: a `context_length` of 0
is refused at validation with the node's own bounds, not met as a ZeroDivisionError in the sampler. Linked values
are not known at validation; `execute` passes the same problem to `refuse`, before any heavy work.
"""

from comfy_api.latest import io


def outside_declared_range(node: type[io.ComfyNode], **values) -> str | None:
    """What is wrong with the first number outside the min/max its node declares, or None."""
    schema = node.define_schema()
    declared = {spec.id: spec for spec in schema.inputs}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # linked: None at validation
        low, high = getattr(declared[name], "min", None), getattr(declared[name], "max", None)
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{schema.node_id}: {name} is {value}, outside its range {low} to {high}; set it within the range"
    return None


def percent_range_problem(node: type[io.ComfyNode], start_percent: float, end_percent: float) -> str | None:
    """The check of nodes acting on part of the sampling (controls, motion): each percent within 0..1, and a range
    that starts after it ends is empty."""
    problem = outside_declared_range(node, start_percent=start_percent, end_percent=end_percent)
    if problem is None and None not in (start_percent, end_percent) and start_percent > end_percent:
        problem = (f"start_percent ({start_percent}) is after end_percent ({end_percent}): it would never apply; "
                   f"swap them")
    return problem


def refuse(problem: str | None) -> None:
    """In `execute`: the problem its `validate_inputs` would have reported, for values that arrived by link."""
    if problem:
        raise ValueError(problem)

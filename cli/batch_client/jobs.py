"""The job list of a batch: every combination of CSV row x prompt x seed, each a copy of the workflow with its own
overrides, and the parsing of the seeds, CSV rows, prompts and `--set` values it is built from. Pure: no network."""

from __future__ import annotations

import csv
import itertools
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .workflow import Target, UsageError, apply_overrides, check_target, parse_target, parse_value


def parse_assignment(text: str) -> tuple[Target, Any]:
    """`node-id/input-name=value` (the value as in parse_value)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"--set {text!r} must be written node-id/input-name=value, e.g. 7/width=512")
    return parse_target(key, "--set"), parse_value(value)


def parse_seeds(text: str) -> list[int]:
    """Seeds written as a comma-separated list of numbers and inclusive ranges: `1,2,5-9`."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            low, high = int(first), int(last if sep else first)
        except ValueError:
            raise UsageError(f"--seeds: {part!r} is not a seed or a range like 5-9 (seeds are integers >= 0)") from None
        if low > high:
            raise UsageError(f"--seeds: the range {part!r} is empty (write the smaller seed first)")
        seeds.extend(range(low, high + 1))
    if not seeds:
        raise UsageError(f"--seeds {text!r} names no seed")
    return seeds


def parse_csv(text: str, name: str = "CSV") -> list[dict[Target, Any]]:
    """One override dict per data row. The header names the inputs (`node-id/input-name`); an empty cell leaves that
    input as the workflow has it (write "" for an empty string); blank lines are skipped."""
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not rows:
        raise UsageError(f"{name} is empty: it needs a header of node-id/input-name columns and one row per job")
    header = [parse_target(column, f"{name} column") for column in rows[0]]
    if len(set(header)) != len(header):
        raise UsageError(f"{name}: a column appears twice in the header")
    jobs = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"{name} data row {line - 1} has {len(row)} cells, the header {len(header)}")
        jobs.append({target: parse_value(cell) for target, cell in zip(header, row) if cell.strip()})
    if not jobs:
        raise UsageError(f"{name} has a header but no row: one row per job")
    return jobs


def read_prompts_file(text: str) -> list[str]:
    """One prompt per non-blank line, taken literally (no JSON parsing: a prompt is always text)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class Job:
    """One prompt to queue: its overrides, and what became of it."""

    index: int
    total: int
    overrides: dict[Target, Any]  # only the per-job ones, for the label
    workflow: dict
    prompt_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "pending"  # pending, queued, ok, failed
    error: str | None = None
    files: list[Path] = field(default_factory=list)
    server_files: list[dict] = field(default_factory=list)
    server: str | None = None  # the server it is queued on, or that ran it

    @property
    def tag(self) -> str:
        return f"[{self.index}/{self.total}]"

    @property
    def label(self) -> str:
        parts = []
        for (node, name), value in self.overrides.items():
            shown = value if not isinstance(value, str) else (value if len(value) <= 40 else value[:37] + "...")
            parts.append(f"{node}/{name}={json.dumps(shown)}")
        return " ".join(parts) or "(workflow as is)"


def build_jobs(workflow: dict, prompts: list[str], seeds: list[int], rows: list[dict[Target, Any]],
               common: dict[Target, Any], prompt_target: Target | None, seed_target: Target | None) -> list[Job]:
    """Every combination of CSV row x prompt x seed (each axis that is not given counts as one), seeds varying
    fastest. Overrides apply in the order --set, CSV row, prompt, seed, so a later one wins on the same input. All
    targets are checked here, before anything is queued."""
    for target in common:
        check_target(workflow, target, f"--set {'/'.join(target)}")
    for target in {target for row in rows for target in row}:
        check_target(workflow, target, f"CSV column {'/'.join(target)}")
    combos = list(itertools.product(rows or [{}], prompts or [None], seeds or [None]))
    jobs = []
    for index, (row, prompt, seed) in enumerate(combos, start=1):
        own = dict(row)
        if prompt is not None:
            own[prompt_target] = prompt
        if seed is not None:
            own[seed_target] = seed
        jobs.append(Job(index, len(combos), own, apply_overrides(workflow, {**common, **own})))
    return jobs

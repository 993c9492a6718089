"""What the user sees while a batch runs: progress on stderr, downloaded paths on stdout, a summary at the end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .jobs import Job


class Reporter:
    """Progress lines on stderr, one per event worth showing; downloaded paths on stdout, for scripts."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def line(self, text: str, detail: bool = False) -> None:
        if not (detail and self.quiet):
            print(text, file=self.stream, flush=True)

    def job(self, job: Job, text: str, detail: bool = False) -> None:
        self.line(f"{job.tag} {text}", detail)

    def progress(self, job: Job, node_id: Any, class_type: str, value: Any, maximum: Any) -> None:
        """A node's step (a sampler's, mostly): its own method so that another front end can show steps its way."""
        self.job(job, f"node {node_id} {class_type}: {value}/{maximum}", detail=True)

    def saved(self, path: Path) -> None:
        print(path, flush=True)

    def summary(self, jobs: list[Job], servers: bool = False) -> None:
        """A table of the jobs; with `servers`, which server ran each."""
        rows = [("job", "prompt_id", *(("server",) if servers else ()), "status", "files / error")]
        for job in jobs:
            if job.status == "ok":
                detail = ", ".join(str(path) for path in job.files) or "(no output file)"
            else:
                detail = job.error or ""
            where = (job.server or "-",) if servers else ()
            rows.append((f"{job.index}/{job.total}", job.prompt_id, *where, job.status, detail))
        columns = len(rows[0]) - 1
        widths = [max(len(row[i]) for row in rows) for i in range(columns)]
        self.line("")
        for row in rows:
            self.line("  ".join(cell.ljust(width) for cell, width in zip(row[:columns], widths)) + "  " + row[-1])
        failed = sum(job.status != "ok" for job in jobs)
        self.line(f"{len(jobs) - failed} succeeded, {failed} failed")

"""Queue a batch of jobs of one API-format workflow on a ComfyUI server, follow them, and download their outputs.

Each job is the workflow with some inputs overridden: a prompt text, a seed, a row of a CSV file (columns named
`node-id/input-name`), and `--set` values shared by all jobs. Progress goes to stderr (one line per event, prefixed
by the job number), the path of every downloaded file to stdout, and a summary table to stderr at the end. The exit
code is 0 when every job succeeded, 1 when any failed, 2 for a usage error (nothing is queued then).

Queuing is idempotent: the client picks each prompt_id itself, and after a lost connection it asks the server
(/queue, /history) whether that id arrived before it posts again, so a retry never runs a job twice.

Runs from anywhere with the Python of a ComfyUI install (standard library + aiohttp, which ComfyUI depends on):

    python cli/batch_queue.py workflow_api.json --prompt "a cat" --prompt "a dog" --seeds 1-3 --out videos

This file is only the entry point; the client is the package cli/batch_client/ beside it.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script from any folder: the package beside this file is importable once its folder is on the path.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from batch_client.command_line import main

    sys.exit(main())

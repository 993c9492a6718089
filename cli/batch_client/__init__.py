"""The batch client behind cli/batch_queue.py, in parts that each read on their own; standard library + aiohttp
only, so it runs with the Python of any ComfyUI install and imports neither ComfyUI nor the rest of the pack.

- workflow: API-format workflows: targets (`node-id/input-name`), checks, overrides, finding the prompt, seed or any
  input by name
- jobs: the job list (CSV rows x prompts x seeds) and the parsing of what it is built from
- client: one server over HTTP and its websocket, with retries that never queue a job twice
- runner: a batch run to its end: queue, follow, download
- progress: what the user sees while it runs
- command_line: the options, the plan, the summary and the exit code of cli/batch_queue.py
"""

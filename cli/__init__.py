"""Command-line tools of the pack; each runs as a plain script and imports neither the pack nor ComfyUI."""

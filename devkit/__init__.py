"""The development kit that tests, scripts and benchmarks share (never the pack at run time): how to import the pack
and find ComfyUI (bootstrap.py), model files generated with random weights in the real on-disk layouts (cached outside
git), tiny models built in code, a real ComfyUI server and a headless Chromium to drive, and the shipped workflows."""

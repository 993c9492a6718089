"""AnimateLCM sampling math in plain PyTorch: the LCM schedule and the multistep LCM sampler. No ComfyUI here."""

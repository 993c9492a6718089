"""How the pack plugs into ComfyUI, apart from its node classes (nodes/): motion layers injected into a MODEL's UNet,
model sampling, the context-window handler, per-frame controls, the I2V features, the SVD-xt weight patches, the video
files, and `compat`, the one place where ComfyUI versions differ. Built on the pure layers (motion_models/,
samplers/, video/) and on ComfyUI's sanctioned extension points only."""

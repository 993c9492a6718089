"""Video frames in and out (PyAV/Pillow writers, OpenCV/Pillow readers, on uint8 frames) and colour matching; no ComfyUI."""

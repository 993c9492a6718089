"""Video files in and out: PyAV/Pillow writers and OpenCV/Pillow readers, on uint8 frames, no ComfyUI."""

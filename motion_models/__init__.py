"""The motion model in plain PyTorch: module code and checkpoint handling. Nothing here imports ComfyUI."""

from .checkpoint import (LoadedMotionModel, MotionModelFormat, MotionModelFormatError, detect_format,
                         load_motion_model, normalize_state_dict, read_state_dict)
from .image_encoder import ImageEncoder
from .motion_module import MotionModel, Placement, TemporalTransformer, attention_sdpa

__all__ = ["ImageEncoder", "LoadedMotionModel", "MotionModel", "MotionModelFormat", "MotionModelFormatError",
           "Placement", "TemporalTransformer", "attention_sdpa", "detect_format", "load_motion_model",
           "normalize_state_dict", "read_state_dict"]

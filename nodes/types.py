"""Custom socket types and model folders, declared once for every node of the pack."""

import os

import folder_paths
from comfy_api.latest import io

# The folders every AnimateDiff pack uses, so users keep one copy of their motion modules and motion LoRAs.
MOTION_MODELS = "animatediff_models"
MOTION_LORAS = "animatediff_motion_lora"

# The MOTION_MODEL socket; the model itself is motion_models.MotionModel.
MotionModelSocket = io.Custom("MOTION_MODEL")

# The MOTION_LORA socket: a list of patching.motion_lora.MotionLoRA (the name other packs use, so a chain reads the
# same in every workflow; ADE's own entries are another Python type, refused when applied).
MotionLoRASocket = io.Custom("MOTION_LORA")

# AnimateDiff-Evolved's MULTIVAL socket: a number, or a tensor of values per frame (F, 1, 1) or per frame and pixel
# (F, H, W), so its Multival nodes plug into the pack's motion strength inputs and the pack's schedule into theirs.
MultivalSocket = io.Custom("MULTIVAL")

# VideoHelperSuite's video-info socket: a dict of source_/loaded_ fps, frame_count, duration, width, height, so its
# info nodes (and anything written for its Load Video) read the pack's loader too.
VideoInfoSocket = io.Custom("VHS_VIDEOINFO")

# The SPARSECTRL socket: a SparseCtrl model only ALCM_ApplySparseCtrl can run (it needs the frame count of each call).
SparseCtrlSocket = io.Custom("SPARSECTRL")


def register_model_folder(name: str) -> None:
    """Add models/<name> (keeping paths other packs or extra_model_paths.yaml added) with the checkpoint extensions.

    A folder name ComfyUI does not know gets an empty extension set, which lists every file; the set is replaced,
    not mutated, because another pack may share it.
    """
    folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
    paths, extensions = folder_paths.folder_names_and_paths[name]
    folder_paths.folder_names_and_paths[name] = (paths, set(extensions) | folder_paths.supported_pt_extensions)

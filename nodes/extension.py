"""The node list ComfyUI registers (through `comfy_entrypoint` in the pack's __init__.py)."""

from comfy_api.latest import ComfyExtension, io

from .color import ColorMatch
from .context import ContextOptions
from .controlnet import ApplyVideoControlNet
from .free_init import FreeInit
from .image_to_video import ImageToVideo
from .motion_model import ApplyMotionModel, LoadMotionLoRA, LoadMotionModel
from .multival import ValueSchedule
from .prompt_schedule import PromptSchedule
from .svd import LoadSVDUNet
from .svd_sampling import SVDScheduler
from .sampling import KSampler, Sampler, Scheduler
from .sparse_control import ApplySparseCtrl, LoadSparseCtrl
from .types import MOTION_LORAS, MOTION_MODELS, register_model_folder
from .video import LoadImageSequence, LoadVideo, LoadVideoLatent, SaveVideo

# Runs when ComfyUI loads the pack: ComfyExtension.on_load is never called in ComfyUI 0.3.75.
register_model_folder(MOTION_MODELS)
register_model_folder(MOTION_LORAS)


class AnimateLCMExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LoadMotionModel, ApplyMotionModel, ImageToVideo, ContextOptions, PromptSchedule, ApplyVideoControlNet,
                Scheduler, Sampler, KSampler, SaveVideo, LoadVideo, ColorMatch, LoadSVDUNet, SVDScheduler, LoadSparseCtrl,
                ApplySparseCtrl, FreeInit, LoadMotionLoRA, ValueSchedule, LoadImageSequence,
                LoadVideoLatent]

"""AnimateLCM for ComfyUI: fast video generation with Stable Diffusion 1.5 in 4 steps.

ComfyUI calls `comfy_entrypoint` right after importing this folder. The nodes (and ComfyUI itself) are imported
only then, so the model and sampling code stays importable without ComfyUI (unit tests, command-line tools).
"""


# The frontend extension that lets the video loaders upload every format they read (web/video_upload.js).
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.extension import AnimateLCMExtension

    return AnimateLCMExtension()

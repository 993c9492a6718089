"""AnimateLCM for ComfyUI: fast video generation with Stable Diffusion 1.5 in 4 steps.

ComfyUI calls `comfy_entrypoint` right after importing this folder. The nodes (and ComfyUI itself) are imported
only then, so the model and sampling code stays importable without ComfyUI (unit tests, command-line tools).
"""


async def comfy_entrypoint():
    from .nodes.extension import AnimateLCMExtension

    return AnimateLCMExtension()

"""Measurement (not a test): does ComfyUI's own context-window handler serve an SD1.5 video batch?

Runs core's `IndexListContextHandler` (the one core's Context Windows nodes install) and the pack's
`VideoContextHandler` (ALCM_ContextOptions) on the same inputs, with a stand-in model call that records what each
UNet call would receive, and prints one line per check:

- per-frame conditioning: a prompt schedule's cross-attention [frames, 77, 768]; does each call get the rows of the
  frames it denoises?
- a batch of timesteps (one per frame, as video-to-video with per-frame denoise gives): does each call get its frames'?
- frames per call: the window length the motion module sees (core 0.4.0+ prepends the frame before each window,
  `causal_window_fix`, on by default);
- coverage: are all frames denoised at every step, and no index past the last frame, for 20 and 40 frames with
  windows of 16 (overlap 4), every schedule, strides 1 and 2?

Run with a target's Python, e.g.  .dev/comfyui-0.33.0/venv/bin/python benchmarks/core_context_handler.py
(ALCM_COMFYUI=0.3.75 .dev/comfyui-0.3.75/venv/bin/python ... for the other target).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling as bench  # noqa: E402  (importing the pack and ComfyUI)

LENGTH, OVERLAP = 16, 4
CORE_SCHEDULES = {"uniform": "standard_uniform", "looped uniform": "looped_uniform", "static": "standard_static",
                  "batched": "batched"}


def core_handler(schedule: str, stride: int):
    import comfy.context_windows as cw

    return cw.IndexListContextHandler(cw.get_matching_context_schedule(CORE_SCHEDULES[schedule]),
                                      cw.get_matching_fuse_method("pyramid"), LENGTH, OVERLAP, stride,
                                      closed_loop=schedule == "looped uniform")


def pack_handler(schedule: str, stride: int):
    from animatelcm.patching.context_handler import VideoContextHandler

    return VideoContextHandler(LENGTH, OVERLAP, stride, schedule, "pyramid")


def run(handler, model, frames: int, step: int, per_frame_timesteps: bool) -> list[dict]:
    """One sampling step through `handler`; what each model call received. Frame f's latent, prompt row and timestep
    all carry the value f, so a call's inputs say which frames they belong to."""
    import comfy.conds

    sigmas = torch.tensor([14.6, 7.0, 3.0, 1.0, 0.0])
    values = torch.arange(frames, dtype=torch.float32)
    x = values.reshape(frames, 1, 1, 1).expand(frames, 4, 2, 2).contiguous()
    prompt = comfy.conds.CONDCrossAttn(values.reshape(frames, 1, 1).expand(frames, 77, 8).contiguous())
    conds = [[{"model_conds": {"c_crossattn": prompt}, "cross_attn": prompt.cond}]]
    timestep = sigmas[step] + 0 * values if per_frame_timesteps else sigmas[step:step + 1]
    calls = []

    def calc(model, sub_conds, sub_x, sub_timestep, model_options):
        window = model_options["transformer_options"]["context_window"]
        calls.append({"index_list": list(window.index_list), "x": sub_x[:, 0, 0, 0].tolist(),
                      "prompt": sub_conds[0][0]["model_conds"]["c_crossattn"].cond[:, 0, 0].tolist(),
                      "timesteps": sub_timestep.numel()})
        return [torch.zeros_like(sub_x) for _ in sub_conds]

    options = {"transformer_options": {"sample_sigmas": sigmas}}
    handler.execute(calc, model, conds, x, timestep, options)
    return calls


def check(name: str, make_handler, model) -> None:
    findings = []
    for per_frame_timesteps in (False, True):
        try:
            calls = run(make_handler("uniform", 1), model, 40, 1, per_frame_timesteps)
        except Exception as error:  # noqa: BLE001  (reported, not raised: this is a measurement)
            findings.append(f"{'per-frame' if per_frame_timesteps else 'one'} timestep: fails "
                            f"({type(error).__name__}: {error})")
            continue
        if not per_frame_timesteps:
            right_prompts = all(c["prompt"] == c["x"] for c in calls)
            longest = max(len(c["x"]) for c in calls)
            findings.append(f"per-frame prompts cut to the call's frames: {'yes' if right_prompts else 'NO'}")
            findings.append(f"frames per call for {LENGTH}-frame windows: up to {longest}"
                            + ("" if longest == LENGTH else " (the frame before the window is prepended)"))
        else:
            findings.append(f"per-frame timesteps: runs ({calls[0]['timesteps']} timesteps in a "
                            f"{len(calls[0]['x'])}-frame call)")
    gaps = []
    for schedule in CORE_SCHEDULES:
        for stride in (1, 2):
            for frames in (20, 40):
                for step in range(4):
                    try:
                        calls = run(make_handler(schedule, stride), model, frames, step, False)
                    except Exception as error:  # noqa: BLE001
                        gaps.append(f"{schedule}/stride {stride}/{frames} frames: fails ({type(error).__name__})")
                        break
                    seen = {int(v) for c in calls for v in c["x"]}
                    indices = {i for c in calls for i in c["index_list"]}
                    if seen != set(range(frames)) or max(indices) >= frames:
                        gaps.append(f"{schedule}/stride {stride}/{frames} frames/step {step}: "
                                    f"{frames - len(seen & set(range(frames)))} frames not denoised, "
                                    f"largest index {max(indices)}")
    findings.append("every frame denoised at every step, no index past the end: "
                    + ("yes" if not gaps else f"NO, {len(gaps)} cases, e.g. " + "; ".join(gaps[:3])))
    print(f"{name}:")
    for finding in findings:
        print(f"  - {finding}")


def main() -> None:
    bench.import_pack_and_comfyui(cpu=True)
    import comfyui_version

    from animatelcm.devkit.comfy import tiny_sd15_model

    model = tiny_sd15_model().model
    print(f"ComfyUI {comfyui_version.__version__}; {LENGTH}-frame windows, overlap {OVERLAP}, pyramid fusion")
    check("core IndexListContextHandler", core_handler, model)
    check("the pack's VideoContextHandler (ALCM_ContextOptions)", pack_handler, model)


if __name__ == "__main__":
    main()

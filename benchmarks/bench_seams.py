"""Benchmark (not a test): seams between context windows, default noise against FreeNoise, 64 frames.

The measure: the mean absolute frame-to-frame change of the sampled latent (over channels and pixels) on the pairs of
frames where the set of windows holding them changes (a seam can only be there) divided by the same mean on the pairs
inside one set of windows. 1.0 is seamless; the one-window run of the same clip shows what 1.0 looks like.

The model where seams mean something: no real AnimateLCM weights exist on this machine and random weights have no
notion of a coherent clip, so the UNet is replaced by the exact Bayes denoiser of a known video prior, through the
real sampling path (the pack's ALCM_ContextOptions windows and FreeNoise, 4 steps at cfg 1 on the AnimateLCM
schedule with ALCM_KSampler, and with core's KSampler and its lcm sampler; only the model's output is computed by
the prior). The prior: every frame of a window is one
still image s ~ N(0, 1) plus a small change of its own d_f ~ N(0, b), b = 0.05, independent per latent value. For a
window's noisy frames x_f = s + d_f + sigma * n_f, the posterior means are
    s_hat = sum_f x_f / v / (1 + F / v),  v = b + sigma^2,    x0_f = s_hat + (b / v) (x_f - s_hat),
what a motion module is trained to approximate on clips that hold still: each window comes out coherent, and where
two windows disagree the fused clip shows a seam. Real motion modules and real clips will give other figures; the
ordering is what this shows.

Run with the dev Python:  .dev/comfyui-0.33.0/venv/bin/python benchmarks/bench_seams.py [--help]
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling as bench  # noqa: E402  (the shared helpers: importing ComfyUI and the pack)

CHANGE_VARIANCE = 0.05  # b: per-frame change against the still image's variance of 1


def prior_denoiser(record: list):
    """A model function wrapper returning the prior's posterior mean per window (what `apply_model` returns: the
    denoised frames, from x in sigma units), recording each call's sigma and frames."""

    def denoise(apply_model, args):
        sigma = args["timestep"].max().item()
        x = args["input"]
        frames = x.shape[0] // len(args["cond_or_uncond"])
        params = args["c"]["transformer_options"].get("ad_params") or {}
        record.append((sigma, list(params.get("sub_idxs") or range(frames))))
        v = CHANGE_VARIANCE + sigma ** 2
        out = []
        for clip in x.double().split(frames):
            still = (clip / v).sum(0, keepdim=True) / (1 + frames / v)
            out.append(still + (CHANGE_VARIANCE / v) * (clip - still))
        return torch.cat(out).to(x.dtype)

    return denoise


def seam_ratio(latent: torch.Tensor, windows: list[list[int]]) -> tuple[float, float, float]:
    """(mean change across seams, mean change inside, their ratio)."""
    member = [frozenset(i for i, w in enumerate(windows) if f in w) for f in range(latent.shape[0])]
    change = (latent[1:] - latent[:-1]).abs().flatten(1).mean(1)
    seam = [change[t].item() for t in range(len(change)) if member[t] != member[t + 1]]
    inside = [change[t].item() for t in range(len(change)) if member[t] == member[t + 1]]
    if not seam:  # one window: every pair is inside
        return float("nan"), statistics.mean(inside), 1.0
    return statistics.mean(seam), statistics.mean(inside), statistics.mean(seam) / statistics.mean(inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="pixels (latent size / 8); default 128")
    parser.add_argument("--seeds", type=int, default=5, help="runs per row, mean and spread printed")
    parser.add_argument("--context-length", type=int, default=16)
    parser.add_argument("--context-overlap", type=int, default=4)
    opts = parser.parse_args()
    bench.import_pack_and_comfyui(cpu=True)

    import comfy.utils
    import nodes
    from animatelcm.devkit import motion_modules as mm
    from animatelcm.devkit.comfy import tiny_sd15_model
    from animatelcm.patching.context_handler import apply_context_windows
    from animatelcm.patching.lcm_sampling import sample_video
    from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file

    comfy.utils.PROGRESS_BAR_ENABLED = False
    path = mm.motion_module_file("animatelcm_t2v", mm.TINY_WIDTH, dtype=torch.float32)
    # The pack's sampling setup (AnimateLCM schedule, frame checks); the UNet itself is never run.
    base = attach_motion_model(tiny_sd15_model(), load_motion_model_file(str(path), path.name), 1.0, "auto")
    latent = {"samples": torch.zeros(opts.frames, 4, opts.size // 8, opts.size // 8)}
    positive, negative = [[torch.zeros(1, 77, 768), {}]], [[torch.zeros(1, 77, 768), {}]]

    def run(sampler: str, schedule: str | None, noise: str, seed: int) -> tuple[float, float, float]:
        record: list = []
        model = base.clone()
        model.set_model_unet_function_wrapper(prior_denoiser(record))  # replaces apply_model
        if schedule:
            model = apply_context_windows(model, opts.context_length, opts.context_overlap, 1, schedule, "pyramid",
                                          noise)
        if sampler == "ALCM_KSampler":
            out = sample_video(model, positive, negative, latent, seed, 4, 1.0, 1.0)["samples"]
        else:  # core's lcm sampler draws its own noise at each step: FreeNoise reaches only the initial noise
            out = nodes.common_ksampler(model, seed, 4, 1.0, "lcm", "simple", positive, negative, latent)[0]["samples"]
        first = record[0][0]  # the windows of the first step: they lay out the clip's content
        return seam_ratio(out.double(), [frames for sigma, frames in record if sigma == first])

    print("=" * 100)
    print(f"Seams between context windows: {opts.frames} frames at {opts.size}x{opts.size} px, windows "
          f"{opts.context_length}/{opts.context_overlap} (length/overlap), pyramid fusion, 4 steps, cfg 1, "
          f"{opts.seeds} seeds; model: Bayes denoiser of a still-image-per-window prior (b = {CHANGE_VARIANCE})")
    print(f"{'sampler':<16}{'windows':<20}{'noise':<12}{'change at seams':>17}{'change inside':>15}"
          f"{'seam / inside':>16}")
    configurations = [(sampler, schedule, noise) for schedule in ("static", "uniform")
                      for sampler in ("ALCM_KSampler", "KSampler lcm") for noise in ("default", "FreeNoise")]
    for sampler, schedule, noise in configurations + [("ALCM_KSampler", None, "default")]:
        rows = [run(sampler, schedule, noise, seed) for seed in range(opts.seeds)]
        seam, inside, ratio = (statistics.mean(r[i] for r in rows) for i in range(3))
        spread = statistics.stdev(r[2] for r in rows) if len(rows) > 1 else 0.0
        label = schedule or "none (one window)"
        print(f"{sampler:<16}{label:<20}{noise:<12}{seam:>17.4f}{inside:>15.4f}{ratio:>10.2f} ± {spread:.2f}")
    print("seam / inside: the mean |frame t+1 - frame t| where the windows holding the frames change, over the same "
          "inside; 1.0 = no seam. Uniform windows move every step: seams are placed by the first step's windows.")


if __name__ == "__main__":
    main()

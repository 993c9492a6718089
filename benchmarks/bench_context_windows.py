"""Benchmark (not a test): context windows keep memory bounded by the window and time linear in the clip length.

One SD1.5 UNet + AnimateLCM-T2V motion model (the full-size random-weight fixtures: the cost of a forward does not
depend on the weight values), wrapped with the pack's context windows (ALCM_ContextOptions: 16-frame windows, 4
frames overlap, uniform schedule, pyramid fusion), sampled with the pack's KSampler (4 steps, cfg 1) at 16, 32 and 64
frames in one process. The 16-frame run fits in one window, so the handler is not used: it is the baseline.

(a) peak memory at 64 frames / at 16 frames, target <= 1.3x: only a window goes through the UNet, so what grows
    with the clip is its latents and fused outputs (64 KiB per frame and tensor at 512x512), not the activations;
(b) time per frame of each length / that of 16 frames. Overlapping windows process some frames twice (expected:
    about length / (length - overlap) = 1.33x the UNet-frames per frame on long clips, more on short ones, where the
    window ending at the last frame overlaps its neighbour further), so time per UNet-frame is printed too: linear
    time means that one stays about 1x.

CUDA when present (512x512, the UNet dtype ComfyUI picks there), the CPU otherwise (64x64 by default).
Run with the dev Python:  .dev/comfyui-0.33.0/venv/bin/python benchmarks/bench_context_windows.py [--help]
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling as bench  # noqa: E402  (the shared helpers: importing, measuring, counting, encoding)

TARGET_MEMORY_RATIO = 1.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is present")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64],
                        help="clip lengths (default 16 32 64); the first is the baseline")
    parser.add_argument("--width", type=int, help="pixels (default 512 on CUDA, 64 on the CPU)")
    parser.add_argument("--height", type=int, help="pixels (default 512 on CUDA, 64 on the CPU)")
    parser.add_argument("--steps", type=int, default=4, help="the pack's steps (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per clip length, median taken (>= 2)")
    parser.add_argument("--context-length", type=int, default=16)
    parser.add_argument("--context-overlap", type=int, default=4)
    parser.add_argument("--schedule", default="uniform", help="as ALCM_ContextOptions (default uniform)")
    parser.add_argument("--fuse-method", default="pyramid", help="as ALCM_ContextOptions (default pyramid)")
    opts = parser.parse_args()
    load = os.getloadavg()[0]  # before this process adds its own
    cpu = opts.cpu or not torch.cuda.is_available()
    size = 64 if cpu else 512
    width, height, repeats = opts.width or size, opts.height or size, max(opts.repeats, 2)
    bench.import_pack_and_comfyui(cpu)

    import comfy.model_management as mm
    import comfy.sd
    import comfy.utils
    from animatelcm.patching.context_handler import apply_context_windows
    from animatelcm.patching.lcm_sampling import sample_video
    from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
    from animatelcm.devkit.motion_modules import motion_module_file
    from animatelcm.devkit.sd15_checkpoint import checkpoint_file

    comfy.utils.PROGRESS_BAR_ENABLED = False
    model, clip = comfy.sd.load_checkpoint_guess_config(str(checkpoint_file()), output_vae=False)[:2]
    motion_path = motion_module_file("animatelcm_t2v")
    motion = load_motion_model_file(str(motion_path), motion_path.name)
    # One patcher for every length (no re-patching between runs): below the window length the handler is skipped.
    windowed = apply_context_windows(attach_motion_model(model, motion, 1.0, "auto"), opts.context_length,
                                     opts.context_overlap, 1, opts.schedule, opts.fuse_method)
    positive, negative = (bench.encode(clip, text) for text in (bench.POSITIVE, bench.NEGATIVE))
    device, lengths, base = windowed.load_device, opts.frames, opts.frames[0]

    def run(frames, steps=opts.steps):
        latent = torch.zeros(frames, 4, height // 8, width // 8)
        sample_video(windowed, positive, negative, {"samples": latent}, bench.SEED, steps, 1.0, 1.0)

    print("=" * 112)
    print("AnimateLCM context windows benchmark")
    print(f"machine : {bench.machine(load)}")
    print(f"device  : {device}, UNet dtype {windowed.model.get_dtype()} "
          f"(compute {windowed.model.manual_cast_dtype or 'same'}), motion model {motion_path.name}")
    print(f"settings: {' / '.join(map(str, lengths))} frames at {width}x{height} px (latent {width // 8}x{height // 8}),"
          f" {repeats} timed runs each (median, lengths interleaved), seed {bench.SEED}")
    print(f"sampler : ALCM_KSampler {opts.steps} steps, cfg 1.0 (one UNet pass per window per step)")
    print(f"windows : ALCM_ContextOptions length {opts.context_length}, overlap {opts.context_overlap}, stride 1, "
          f"{opts.schedule}, {opts.fuse_method}; clips of <= {opts.context_length} frames skip the handler "
          f"(the baseline)")

    # The model is loaded before anything is measured (bench.measured only sees what sampling itself adds), each
    # length is warmed up untimed once, then the lengths run interleaved per repeat so drift hits them alike.
    unet = windowed.model.diffusion_model
    record = {frames: {"times": []} for frames in lengths}
    with torch.inference_mode():
        mm.load_models_gpu([windowed])
        for frames in lengths:
            run(frames, 2)
        for _ in range(repeats):
            for frames in lengths:
                mm.load_models_gpu([windowed])  # a no-op when loaded: keeps loading out of every measurement
                with bench.counting_calls([unet]) as passes, bench.measured(device, record[frames]):
                    run(frames)
                record[frames]["passes"] = passes

    memory = "peak CUDA alloc growth" if device.type == "cuda" else "peak RSS growth"
    print("-" * 112)
    print(f"{'frames':>6} {'UNet passes':>12} {'UNet-frames':>11} {'median s':>9} {'s/frame':>8} {'s/UNet-frame':>12} "
          f"{memory:>22}  runs (s)")
    for frames, r in record.items():
        r["median"], r["unet_frames"] = statistics.median(r["times"]), sum(r["passes"])
        batches = sorted(set(r["passes"]))
        shape = f"{len(r['passes'])} x {batches[0] if len(batches) == 1 else batches}"
        print(f"{frames:6} {shape:>12} {r['unet_frames']:11} {r['median']:9.3f} {r['median'] / frames:8.4f} "
              f"{r['median'] / r['unet_frames']:12.5f} {r['peak'] / 2**20:18.1f} MiB  "
              + ", ".join(f"{t:.3f}" for t in r["times"]))

    print("-" * 112)
    first = record[base]
    for frames, r in record.items():
        if frames == base:
            continue
        # Per repeat, against the baseline run of the same round (drift cancels), then the median.
        pairs = list(zip(r["times"], first["times"]))
        per_frame = statistics.median((t / frames) / (b / base) for t, b in pairs)
        per_unet = statistics.median((t / r["unet_frames"]) / (b / first["unet_frames"]) for t, b in pairs)
        memory_ratio = r["peak"] / first["peak"]
        print(f"{frames:3} / {base} frames: time per frame {per_frame:5.2f}x, per UNet-frame {per_unet:5.2f}x "
              f"({r['unet_frames'] / frames:.2f} UNet-frames per frame vs {first['unet_frames'] / base:.2f}), "
              f"peak memory {memory_ratio:5.2f}x")
    last = lengths[-1]
    memory_ratio = record[last]["peak"] / first["peak"]
    print(f"peak memory {last} / {base} frames ({memory}): {memory_ratio:.3f}x   target <= {TARGET_MEMORY_RATIO}x   "
          f"{'PASS' if memory_ratio <= TARGET_MEMORY_RATIO else 'FAIL'}")
    spread = max(max(r["times"]) / min(r["times"]) - 1 for r in record.values())
    print(f"largest spread between repeats of one length: {spread:.1%}"
          + ("  -> noisy (other processes or the host): differences below that spread are not resolved, "
             "raise --repeats" if spread > 0.05 else ""))


if __name__ == "__main__":
    main()

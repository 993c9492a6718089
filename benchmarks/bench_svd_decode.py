"""Benchmark (not a test): peak memory and time to decode 25 frames of SVD latents, all at once vs in chunks.

One SVD VAE (ComfyUI's own: SD's AutoencoderKL encoder + the temporal VideoDecoder, full size, random weights: the
cost of a decode does not depend on the weight values), one latent of 25 frames, decoded by
(1) core VAEDecode: `vae.decode(latent)`; core splits the batch only when its memory estimate says the frames do
    not fit, so with enough free memory all 25 frames go through the decoder at once (the decoder calls column
    shows what it did);
(2) the pack's chunked decode (ALCM_SaveVideo with a VAE and `decode_chunk`): `decode_chunk` frames per decoder
    call, each chunk turned into 8-bit frames before the next is decoded;
(3) core VAEDecodeTiled: for SVD's per-frame latents its temporal settings do not apply (the VAE reports no
    temporal compression); it decodes one frame at a time, in spatial tiles, three overlapping tilings averaged.
Every configuration ends in 8-bit frames, as a saved video does. The temporal decoder mixes the frames of each
decoder call, so (2) and (3) change the result, not only the memory: the last column gives the largest difference
from (1) in 8-bit levels (with random weights; 0 for a per-frame VAE).

Each configuration runs in a fresh process, so none inherits another's allocator state.
CUDA when present (fp16, 1024x576; peak = allocator peak above the loaded VAE, after an untimed run of the same
configuration), the CPU otherwise (fp32, 64x40 by default, as a 25-frame decode at 128x72 takes about 40 s on 2
busy cores; peak = the kernel's resident-set high-water mark, reset before each run (Linux /proc/self/clear_refs),
above the resident set at its start: sampling the resident set misses the short-lived peaks of single layers).
Run with the dev Python:  .dev/comfyui-0.33.0/venv/bin/python benchmarks/bench_svd_decode.py [--help]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling as bench  # noqa: E402  (the shared helpers: importing, measuring, counting)

SEED = 0


def configurations(opts) -> list[tuple[str, str]]:
    """(key, label) pairs, the first the baseline."""
    return ([("all", "VAEDecode (all at once)")]
            + [(f"chunk:{n}", f"pack decode_chunk={n}") for n in opts.chunks]
            + [("tiled", f"VAEDecodeTiled tile {opts.tile}")])


def proc_status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set of this process (VmHWM); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(opts, cpu: bool) -> None:
    """Build the VAE and latent, time one configuration, save its frames, print the numbers as one JSON line."""
    bench.import_pack_and_comfyui(cpu)
    import comfy.utils
    import nodes  # ComfyUI's core nodes (the pack is imported as `animatelcm`, so this name is ComfyUI's)
    from animatelcm.patching.video_files import decoded_frames, to_uint8
    from animatelcm.devkit.svd_comfy import svd_vae

    comfy.utils.PROGRESS_BAR_ENABLED = False
    vae = svd_vae(SEED, dtype=torch.float32 if cpu else torch.float16)
    # A sampled SVD LATENT is about N(0, 1) / 0.18215 (VAE units); random values of that size cost the same.
    latent = torch.randn(opts.frames, 4, opts.height // 8, opts.width // 8, generator=torch.manual_seed(SEED)) / 0.18215
    samples = {"samples": latent}
    if opts.child == "all":
        def run():
            return to_uint8(nodes.VAEDecode().decode(vae, samples)[0])
    elif opts.child == "tiled":
        def run():
            return to_uint8(nodes.VAEDecodeTiled().decode(vae, samples, opts.tile, 64, 64, 8)[0])
    else:
        chunk = int(opts.child.split(":")[1])

        def run():
            return np.stack(list(decoded_frames(samples, vae, chunk)))

    device, decoder, runs = vae.device, vae.first_stage_model.decoder, []
    with torch.inference_mode():
        vae.decode(latent[:1])  # loads the VAE; first kernels
        if device.type == "cuda":
            run()  # kernels and allocator pools for these shapes
        for _ in range(opts.repeats):
            record = {"times": []}
            bench.release_freed_memory()
            exact = device.type == "cpu" and reset_peak_rss()
            start_rss = proc_status_kib("VmRSS") if exact else 0
            with bench.counting_calls([decoder]) as calls:
                with bench.measured(device, record):  # time; CUDA allocator peak, or a sampled resident-set peak
                    frames = run()
            peak = (proc_status_kib("VmHWM") - start_rss) * 1024 if exact else record["peak"]
            runs.append((record["times"][0], peak))
    np.save(opts.output, frames)
    peak = max(p for _, p in runs)
    print("RESULT " + json.dumps({"times": [t for t, _ in runs], "peak": peak, "calls": calls,
                                  "device": str(device), "dtype": str(vae.vae_dtype),
                                  "decoder": type(decoder).__name__}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is present")
    parser.add_argument("--frames", type=int, default=25, help="frames (default 25, AnimateLCM-SVD-xt's)")
    parser.add_argument("--width", type=int, help="pixels, a multiple of 8 (default 1024 on CUDA, 64 on the CPU)")
    parser.add_argument("--height", type=int, help="pixels, a multiple of 8 (default 576 on CUDA, 40 on the CPU)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 4],
                        help="decode_chunk values for the pack's chunked decode (default 16 = ALCM_SaveVideo's, 4)")
    parser.add_argument("--tile", type=int, default=512, help="VAEDecodeTiled tile size in pixels (default 512)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration, median taken (>= 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    cpu = opts.cpu or not torch.cuda.is_available()
    opts.width, opts.height = opts.width or (64 if cpu else 1024), opts.height or (40 if cpu else 576)
    opts.repeats = max(opts.repeats, 1)
    if opts.width % 8 or opts.height % 8:
        parser.error("width and height must be multiples of 8")
    if opts.child:
        child(opts, cpu)
        return

    load = os.getloadavg()[0]  # before the children add their own
    results, frames = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, label in configurations(opts):
            output = Path(tmp) / f"{key.replace(':', '_')}.npy"
            argv = [sys.executable, __file__, "--child", key, "--output", str(output), "--frames", str(opts.frames),
                    "--width", str(opts.width), "--height", str(opts.height), "--tile", str(opts.tile),
                    "--repeats", str(opts.repeats)] + (["--cpu"] if cpu else [])
            done = subprocess.run(argv, capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                sys.exit(f"{label} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results[label] = json.loads(line[len("RESULT "):])
            frames[label] = np.load(output)

    first = next(iter(results.values()))
    print("=" * 120)
    print("SVD VAE decode benchmark")
    print(f"machine : {bench.machine(load)}")
    print(f"device  : {first['device']}, VAE {first['decoder']} (ComfyUI's SVD temporal decoder, random weights), "
          f"dtype {first['dtype']}")
    print(f"settings: {opts.frames} frames at {opts.width}x{opts.height} px (latent {opts.width // 8}x"
          f"{opts.height // 8}), {opts.repeats} timed run(s) per configuration (median), each in a fresh process")

    base_label = next(iter(results))
    base = results[base_label]
    median = {label: statistics.median(r["times"]) for label, r in results.items()}
    memory = "peak CUDA alloc growth" if first["device"].startswith("cuda") else "peak RSS growth"
    print("-" * 120)
    print(f"{'configuration':26} {'decoder calls':>14} {'median s':>9} {'time x':>7} {memory:>22} {'memory x':>9} "
          f"{'max |diff|':>11}  runs (s)")
    for label, r in results.items():
        calls = r["calls"]
        shape = f"{len(calls)} x {calls[0]}" if len(set(calls)) == 1 else f"{len(calls)} ({'/'.join(map(str, calls))})"
        if len(shape) > 14:
            shape = f"{len(calls)} (max {max(calls)})"
        diff = np.abs(frames[label].astype(np.int16) - frames[base_label].astype(np.int16)).max()
        print(f"{label:26} {shape:>14} {median[label]:9.3f} {median[label] / median[base_label]:6.2f}x "
              f"{r['peak'] / 2**20:18.0f} MiB {r['peak'] / max(base['peak'], 1):8.2f}x {diff:7d}/255  "
              + ", ".join(f"{t:.2f}" for t in r["times"]))
    print("-" * 120)
    print(f"ratios against '{base_label}'; memory above the loaded VAE and the input latent, output frames included")
    if opts.repeats > 1:
        spread = max(max(r["times"]) / min(r["times"]) - 1 for r in results.values())
        print(f"largest spread between repeats of one configuration: {spread:.1%}"
              + ("  -> noisy (other processes or the host): raise --repeats" if spread > 0.05 else ""))


if __name__ == "__main__":
    main()

"""Benchmark (not a test): peak memory and time to turn a long video into a LATENT, all at once vs in chunks.

One SD1.5 VAE (ComfyUI's own AutoencoderKL, full size, random weights: the cost of an encode does not depend on the
weight values), one generated clip of 300 frames, turned into a LATENT by
(1) ALCM_LoadVideo, whose IMAGE holds every frame at full size in float32, then core VAEEncode (which splits the
    batch by its memory estimate);
(2) ALCM_LoadVideoLatent with `encode_chunk` frames: read and encoded a chunk at a time, so only one chunk of frames
    and the latents exist (the encode side of ALCM_SaveVideo's `decode_chunk`).
The last column is the largest difference between the two latents (SD's VAE encodes each frame on its own: ~0).

Each configuration runs in a fresh process; peak = the kernel's resident-set high-water mark (Linux), reset at the
start of the run, above the resident set then (the loaded VAE). CUDA when present (512x512), the CPU otherwise
(128x128 by default: core's VAEEncode takes all the memory its estimate allows, many GB at 256 px).
Run with the dev Python:  .dev/comfyui-0.33.0/venv/bin/python benchmarks/bench_video_encode.py [--help]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling as bench  # noqa: E402  (the shared helpers: importing, measuring)
from bench_svd_decode import proc_status_kib, reset_peak_rss  # noqa: E402


def write_clip(path: Path, frames: int, size: int) -> None:
    """A moving pattern, so the encoder has real work (H.264, 24 fps)."""
    y, x = np.mgrid[:size, :size]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, (x + y + i) % 256], -1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def child(opts, cpu: bool) -> None:
    bench.import_pack_and_comfyui(cpu)
    import comfy.sd
    import comfy.utils
    import nodes  # ComfyUI's core nodes
    from animatelcm.devkit.sd15_checkpoint import vae_layout
    from animatelcm.devkit.weights import materialize
    from animatelcm.patching.video_files import ChunkEncoder
    from animatelcm.video.reader import FrameSelection, read_video

    comfy.utils.PROGRESS_BAR_ENABLED = False
    vae = comfy.sd.VAE(sd=materialize(vae_layout(), 0))
    with torch.inference_mode():
        vae.encode(torch.zeros(1, 64, 64, 3))  # loads the VAE; first kernels
        bench.release_freed_memory()
        exact = reset_peak_rss()
        start_rss = proc_status_kib("VmRSS")
        start = time.perf_counter()
        if opts.child == "all":  # what ALCM_LoadVideo returns, then core's VAEEncode
            images = torch.from_numpy(read_video(opts.clip).frames).float().div_(255)
            latent = nodes.VAEEncode().encode(vae, images)[0]["samples"]
        else:  # what ALCM_LoadVideoLatent does
            encoder = ChunkEncoder(vae, FrameSelection(frame_load_cap=0))
            read_video(opts.clip, on_chunk=encoder, chunk_size=int(opts.child.split(":")[1]))
            latent = encoder.latent()["samples"]
        seconds = time.perf_counter() - start
        peak = (proc_status_kib("VmHWM") - start_rss) * 1024 if exact else float("nan")
    np.save(opts.output, latent.float().numpy())
    print("RESULT " + json.dumps({"seconds": seconds, "peak": peak, "frames": latent.shape[0],
                                  "device": str(vae.device), "dtype": str(vae.vae_dtype)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is present")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, help="pixels, a multiple of 8 (default 512 on CUDA, 128 on the CPU)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[16], help="encode_chunk values (default 16)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    cpu = opts.cpu or not torch.cuda.is_available()
    size = opts.size or (128 if cpu else 512)
    if opts.child:
        child(opts, cpu)
        return

    load = os.getloadavg()[0]
    results, latents = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "long_clip.mp4"
        write_clip(clip, opts.frames, size)
        configurations = [("all", "LoadVideo + VAEEncode")] + [(f"chunk:{n}", f"LoadVideoLatent encode_chunk={n}")
                                                                for n in opts.chunks]
        for key, label in configurations:
            output = Path(tmp) / f"{key.replace(':', '_')}.npy"
            argv = [sys.executable, __file__, "--child", key, "--clip", str(clip), "--output", str(output)]
            done = subprocess.run(argv + (["--cpu"] if cpu else []), capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                sys.exit(f"{label} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results[label] = json.loads(line[len("RESULT "):])
            latents[label] = np.load(output)

    base_label = next(iter(results))
    base = results[base_label]
    print("=" * 110)
    print("Video to LATENT benchmark")
    print(f"machine : {bench.machine(load)}")
    print(f"device  : {base['device']}, SD1.5 VAE (random weights), dtype {base['dtype']}")
    print(f"settings: {opts.frames} frames at {size}x{size} px (H.264 source), each configuration in a fresh process")
    print("-" * 110)
    print(f"{'configuration':34} {'frames':>7} {'seconds':>9} {'time x':>7} {'peak RSS growth':>17} {'memory x':>9} "
          f"{'max |diff|':>11}")
    for label, r in results.items():
        diff = float(np.abs(latents[label] - latents[base_label]).max())
        print(f"{label:34} {r['frames']:7d} {r['seconds']:9.1f} {r['seconds'] / base['seconds']:6.2f}x "
              f"{r['peak'] / 2**20:13.0f} MiB {r['peak'] / max(base['peak'], 1):8.2f}x {diff:11.2e}")
    print("-" * 110)
    print(f"ratios against '{base_label}'; memory above the loaded VAE, the LATENT included; full-size frames "
          f"in float32 alone: {opts.frames * size * size * 3 * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()

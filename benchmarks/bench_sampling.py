"""Benchmark (not a test): AnimateLCM's 4-step CFG-free sampling against classic AnimateDiff sampling.

Measured side by side in one process, on one SD1.5 UNet + AnimateLCM-T2V motion model (the full-size random-weight
fixtures: the cost of a forward does not depend on the weight values):

(a) wall time of the pack's KSampler (4 steps, cfg 1) vs core's sampler at AnimateDiff's classic settings
    (ddim sampler, ddim_uniform scheduler, 25 steps, cfg 7.5, linear betas) -> speed-up, target >= 10x;
(b) per-step time of the pack's KSampler vs a bare loop calling the same patched UNet + motion model forward the
    same number of times on the same batch -> overhead, target <= 1.05x;
(c) peak memory of each configuration;
(d) the animated preview's work per step (latent2rgb decode of every frame + animated PNG encode, as when a client
    listens; timed on its own, 20 calls, median) against the pack's time per step -> overhead, target <= 3%.

CUDA when present (16 frames at 512x512, the UNet dtype ComfyUI picks there), the CPU otherwise (16 frames at
64x64 by default). Run with the dev Python:  .dev/comfyui-0.33.0/venv/bin/python benchmarks/bench_sampling.py [--help]
"""

import argparse
import ctypes
import gc
import os
import platform
import runpy
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil  # a ComfyUI requirement
import torch

ROOT = Path(__file__).resolve().parents[1]
SEED, POSITIVE, NEGATIVE = 0, "a red fox running through snow, cinematic", "blurry, low quality"
CLASSIC = {"steps": 25, "cfg": 7.5, "sampler_name": "ddim", "scheduler": "ddim_uniform"}


def import_pack_and_comfyui(cpu: bool) -> None:
    """The pack under the name `animatelcm`, then ComfyUI on the chosen device (devkit/bootstrap.py)."""
    bootstrap = runpy.run_path(str(ROOT / "devkit" / "bootstrap.py"))
    bootstrap["import_pack"]()
    bootstrap["import_comfyui"](cpu)


def machine(load: float) -> str:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (f"CPU {cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), GPU {gpu}, "
            f"torch {torch.__version__}, Python {platform.python_version()}, load average at start {load:.1f}")


def release_freed_memory() -> None:
    """Return freed heap to the OS, so each configuration's RSS peak starts from what is really in use."""
    gc.collect()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def measured(device: torch.device, record: dict):
    """Wall time and peak memory above the level at entry: CUDA allocator peak, or RSS sampled every 5 ms."""
    release_freed_memory()
    process, stop, peak = psutil.Process(), threading.Event(), [0]
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = peak[0] = process.memory_info().rss

        def sample():
            while not stop.wait(0.005):
                peak[0] = max(peak[0], process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
    record["times"].append(time.perf_counter() - start)
    if device.type == "cuda":
        peak[0] = torch.cuda.max_memory_allocated()
    else:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
    record["peak"] = max(record.get("peak", 0), peak[0] - base)


@contextmanager
def counting_calls(modules):
    """The batch size of every call of any of `modules`, while the block runs."""
    calls = []
    hooks = [m.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0])) for m in modules]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def preview_seconds(model, latent: torch.Tensor, calls: int = 20) -> float:
    """Median time of one step's animated preview (patching/animated_preview.py) of `latent`'s frames, with core's
    latent2rgb previewer, encoded but not sent (sending is the server's, on another thread)."""
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod, args
    from animatelcm.patching.animated_preview import animated_callback

    previous, args.preview_method = args.preview_method, LatentPreviewMethod.Latent2RGB
    try:
        previewer = latent_preview.get_previewer(torch.device("cpu"), model.model.latent_format)
    finally:
        args.preview_method = previous
    step = animated_callback(None, previewer, send=lambda message: None)
    x0 = torch.randn(latent.shape, generator=torch.manual_seed(SEED))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step(0, x0, x0, 4)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def encode(clip, text: str) -> list:
    """ComfyUI CONDITIONING for one prompt."""
    cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
    return [[cond, {"pooled_output": pooled}]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is present")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--width", type=int, help="pixels (default 512 on CUDA, 64 on the CPU)")
    parser.add_argument("--height", type=int, help="pixels (default 512 on CUDA, 64 on the CPU)")
    parser.add_argument("--steps", type=int, default=4, help="the pack's steps (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration, median taken (>= 2)")
    opts = parser.parse_args()
    load = os.getloadavg()[0]  # before this process adds its own
    cpu = opts.cpu or not torch.cuda.is_available()
    size = 64 if cpu else 512
    width, height, repeats = opts.width or size, opts.height or size, max(opts.repeats, 2)
    import_pack_and_comfyui(cpu)

    import comfy.model_management as mm
    import comfy.sample
    import comfy.sd
    import comfy.utils
    from animatelcm.patching.lcm_sampling import animatelcm_sigmas, sample_video
    from animatelcm.patching.motion_injection import attach_motion_model, load_motion_model_file
    from animatelcm.devkit.motion_modules import motion_module_file
    from animatelcm.devkit.sd15_checkpoint import checkpoint_file

    comfy.utils.PROGRESS_BAR_ENABLED = False
    model, clip = comfy.sd.load_checkpoint_guess_config(str(checkpoint_file()), output_vae=False)[:2]
    motion_path = motion_module_file("animatelcm_t2v")
    motion = load_motion_model_file(str(motion_path), motion_path.name)
    pack = attach_motion_model(model, motion, 1.0, "auto")  # LCM boundary conditions on linear betas
    classic = attach_motion_model(model, motion, 1.0, "linear")  # the same weights, plain epsilon model sampling
    positive, negative = (encode(clip, text) for text in (POSITIVE, NEGATIVE))
    latent = torch.zeros(opts.frames, 4, height // 8, width // 8)
    device, frames = pack.load_device, opts.frames

    def run_pack(steps=opts.steps):
        sample_video(pack, positive, negative, {"samples": latent}, SEED, steps, 1.0, 1.0)

    def run_classic(steps=CLASSIC["steps"]):
        noise = comfy.sample.prepare_noise(latent, SEED)
        comfy.sample.sample(classic, noise, steps, CLASSIC["cfg"], CLASSIC["sampler_name"], CLASSIC["scheduler"],
                            positive, negative, latent, disable_pbar=True, seed=SEED)

    # The bare loop: the pack model's patched UNet forward (motion layers injected by load_models_gpu, the same
    # transformer_options patches), called once per step on the frames of one cond, as the pack's sampler does.
    sigmas = animatelcm_sigmas(pack, opts.steps).to(device)
    context = positive[0][0].to(device).repeat(frames, 1, 1)
    x = torch.randn(latent.shape, generator=torch.manual_seed(SEED)).to(device) * sigmas[0]
    options = dict(pack.model_options["transformer_options"], cond_or_uncond=[0])

    def run_bare(steps=opts.steps):
        for sigma in sigmas[:steps]:
            pack.model.apply_model(x, sigma.expand(frames), c_crossattn=context, transformer_options=options)

    print("=" * 112)
    print("AnimateLCM sampling benchmark")
    print(f"machine : {machine(load)}")
    print(f"device  : {device}, UNet dtype {pack.model.get_dtype()} (compute {pack.model.manual_cast_dtype or 'same'}),"
          f" motion model {motion_path.name}")
    print(f"settings: {frames} frames at {width}x{height} px (latent {latent.shape[-1]}x{latent.shape[-2]}), "
          f"{repeats} timed runs each (median), seed {SEED}")
    print(f"pack    : ALCM_KSampler {opts.steps} steps, cfg 1.0, timesteps "
          f"{pack.get_model_object('model_sampling').timestep(sigmas[:-1]).int().tolist()}")
    print(f"classic : comfy.sample.sample {CLASSIC['sampler_name']}/{CLASSIC['scheduler']} {CLASSIC['steps']} steps, "
          f"cfg {CLASSIC['cfg']}, eps prediction on linear betas (AnimateDiff), same UNet + motion model")

    # Forward hooks count UNet passes (batch size each) and motion-module calls in every timed run, so the table
    # shows what was timed; they cost microseconds against a UNet pass, and pack and bare loop carry the same ones.
    # (b) runs pack and bare loop interleaved; (a)'s classic runs form a block of their own, each block after an
    # untimed warm-up: switching the UNet between the two clones re-patches it, a cost neither has in real use.
    unet = pack.model.diffusion_model
    transformers = [t for _, t in motion.loaded.model.in_unet_order()]
    record = {name: {"times": []} for name in ("pack", "bare", "classic")}
    blocks = [[("pack", pack, run_pack), ("bare", pack, run_bare)], [("classic", classic, run_classic)]]
    with torch.inference_mode():
        for block in blocks:
            for name, patcher, run in block:
                mm.load_models_gpu([patcher])
                run(2)
            for _ in range(repeats):
                for name, patcher, run in block:
                    with counting_calls([unet]) as passes, counting_calls(transformers) as motion_calls:
                        with measured(device, record[name]):
                            run()
                    record[name].update(passes=passes, motion=len(motion_calls))

    median = {name: statistics.median(r["times"]) for name, r in record.items()}
    labels = {"pack": f"pack {opts.steps}-step cfg 1", "bare": f"bare loop {opts.steps} passes",
              "classic": f"classic {CLASSIC['steps']}-step cfg {CLASSIC['cfg']}"}
    memory = "peak CUDA alloc growth" if device.type == "cuda" else "peak RSS growth"
    print("-" * 112)
    print(f"{'configuration':24} {'UNet passes':>11} {'motion/pass':>11} {'median s':>9} {'s/pass':>8} "
          f"{memory:>22}  runs (s)")
    for name, r in record.items():
        passes = r["passes"]
        print(f"{labels[name]:24} {f'{len(passes)} x {passes[0]}':>11} {r['motion'] / len(passes):11.0f} "
              f"{median[name]:9.3f} {median[name] / len(passes):8.3f} {r['peak'] / 2**20:18.0f} MiB  "
              + ", ".join(f"{t:.3f}" for t in r["times"]))
    speedup = median["classic"] / median["pack"]
    # Each pack run and the bare loop right after it share the machine's state: the median of their ratios cancels
    # drift (another process starting or stopping) that a ratio of the two medians would keep.
    overhead = statistics.median(p / b for p, b in zip(record["pack"]["times"], record["bare"]["times"]))
    spread = max(max(r["times"]) / min(r["times"]) - 1 for r in record.values())
    print("-" * 112)
    for label, value, target, ok in (("(a) classic / pack wall time (medians)", speedup, ">= 10x", speedup >= 10),
                                     ("(b) pack / bare loop per step (paired runs)", overhead, "<= 1.05x",
                                      overhead <= 1.05)):
        print(f"{label:44}: {value:6.3f}x   target {target:9}{'PASS' if ok else 'FAIL'}")
    print(f"{'(c) ' + memory:44}: pack {record['pack']['peak'] / 2**20:.0f} MiB, "
          f"classic {record['classic']['peak'] / 2**20:.0f} MiB")
    preview = preview_seconds(pack, latent)
    per_step = median["pack"] / len(record["pack"]["passes"])
    print(f"{'(d) animated preview / pack step':44}: {preview / per_step:6.2%}   target <= 3%     "
          f"{'PASS' if preview <= 0.03 * per_step else 'FAIL'}  ({preview * 1000:.1f} ms per step; "
          f"at a 64x64 latent, 512 px: {preview_seconds(pack, torch.zeros(frames, 4, 64, 64)) * 1000:.1f} ms)")
    print(f"largest spread between repeats of one configuration: {spread:.1%}"
          + ("  -> noisy (other processes or the host): differences below that spread are not resolved, "
             "raise --repeats" if spread > 0.05 else ""))


if __name__ == "__main__":
    main()

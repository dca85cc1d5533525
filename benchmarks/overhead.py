"""Sampling overhead of ConceptAttention: wall-clock ratio patched / unpatched and extra peak memory,
measured in one process on the same model (random weights: speed does not depend on their values).

    python benchmarks/overhead.py --preset cpu-mid              # a mid-size Flux on the CPU
    python benchmarks/overhead.py --preset flux-dev --device cuda  # full Flux-dev, 1024x1024, 10 concepts
    python benchmarks/overhead.py --list                         # every preset (benchmarks/presets/)

ComfyUI is found as by the pack's scripts (concept_attention/eval/comfy_host.py): COMFYUI_PATH, else the
ComfyUI whose custom_nodes folder holds this pack, else ~/ComfyUI.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def timed_sample(model, cond, latent, steps, device):
    import comfy.sample

    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, start_cpu = time.perf_counter(), time.process_time()
    comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", cond, cond, latent, disable_pbar=True, seed=0)
    if device == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    return time.perf_counter() - start, time.process_time() - start_cpu, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-mid", help="a preset name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from presets import all_presets

    presets = all_presets()
    if args.list:
        for name, p in sorted(presets.items()):
            print(f"{name}: {p.notes} ({p.resolution}px, {p.steps} steps)")
        return None
    if args.preset not in presets:
        parser.error(f"unknown preset {args.preset!r}; choose one of {', '.join(sorted(presets))}")
    preset = presets[args.preset]
    steps = args.steps or preset.steps
    resolution = args.resolution or preset.resolution
    repeats = args.repeats or preset.repeats

    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))  # appended: its nodes/ must not shadow ComfyUI's nodes.py
    from concept_attention.eval.comfy_host import setup

    setup(cpu=args.device == "cpu")  # the pack's one ComfyUI finder
    from concept_attention import Concepts, attach
    from concept_attention.from_image import maps_from_latent

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = preset.build(args.device, dtype)
    gen = torch.Generator().manual_seed(0)
    cond = preset.conditioning(gen)
    concepts = Concepts([f"concept {i}" for i in range(args.concepts)],
                        torch.randn(args.concepts, preset.concept_width, generator=gen))
    patched, recorder = attach(model, concepts)
    latent = preset.latent(resolution)

    timed_sample(model, cond, latent, 1, args.device)  # warm-up: load weights, pick kernels
    timed_sample(patched, cond, latent, 1, args.device)
    times = {"unpatched": [], "patched": []}
    cpu_times = {"unpatched": [], "patched": []}
    peaks = {"unpatched": [], "patched": []}
    for _ in range(repeats):  # interleaved, so drifts hit both alike
        for name, m in (("unpatched", model), ("patched", patched)):
            seconds, cpu_seconds, peak = timed_sample(m, cond, latent, steps, args.device)
            times[name].append(seconds)
            cpu_times[name].append(cpu_seconds)
            peaks[name].append(peak)
    assert recorder.maps().shape[1] == args.concepts

    one_step, _, _ = timed_sample(model, cond, latent, 1, args.device)
    start = time.perf_counter()
    maps_from_latent(model, concepts, latent + 0.1, cond, noise_level=0.5)
    if args.device == "cuda":
        torch.cuda.synchronize()
    from_image = time.perf_counter() - start

    # Best of the interleaved repeats: background load only ever adds time, so the minimum is the
    # least disturbed measurement of each.
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "resolution": resolution, "steps": steps, "concepts": args.concepts, "dtype": str(dtype),
        "seconds_unpatched": round(best["unpatched"], 4), "seconds_patched": round(best["patched"], 4),
        "time_ratio": round(best["patched"] / best["unpatched"], 4),
        "median_time_ratio": round(median["patched"] / median["unpatched"], 4), "repeats": repeats,
        "from_image_seconds": round(from_image, 4), "one_full_step_seconds": round(one_step, 4),
    }
    if args.device == "cpu":  # the process's CPU seconds: unlike wall-clock, not lengthened by other load on the machine
        cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
        result["median_cpu_time_ratio"] = round(cpu["patched"] / cpu["unpatched"], 4)
    if args.device == "cuda":
        base, extra = max(peaks["unpatched"]), max(peaks["patched"]) - max(peaks["unpatched"])
        result.update(peak_bytes_unpatched=base, extra_peak_bytes=extra, extra_peak_ratio=round(extra / base, 5))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

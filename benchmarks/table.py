"""Run several presets of `overhead.py`, each in its own process (so one model's memory is gone before the next
loads), and print the README's performance table.

    python benchmarks/table.py --device cpu --threads 1 --repeats 5   # every *-cpu-mid preset
    python benchmarks/table.py --device cuda                          # every full-size preset, one GPU script
    python benchmarks/table.py --device cuda --presets flux-dev,qwen-image

Each preset's JSON line is also appended to --out (default benchmarks/results/overhead.jsonl), so a run cut short keeps
what it measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def default_presets(device: str) -> list[str]:
    sys.path.insert(0, str(HERE))
    from presets import all_presets

    names = sorted(all_presets())
    if device == "cpu":
        return [n for n in names if n.endswith("cpu-mid")]
    return [n for n in names if not n.endswith("cpu-mid") and n != "tiny"]


def row(result: dict) -> str:
    cpu = result.get("median_cpu_time_ratio")
    memory = f"{result['extra_peak_ratio'] * 100:.2f}%" if "extra_peak_ratio" in result else "n/a on CPU"
    return (f"| {result['preset']} | {result['device']} | {result['resolution']}px, {result['steps']} steps | "
            f"{result['time_ratio']:.3f} / {result['median_time_ratio']:.3f} / "
            f"{f'{cpu:.3f}' if cpu else 'n/a'} | {memory} | "
            f"{result['from_image_seconds']:.2f} s vs {result['one_full_step_seconds']:.2f} s |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", help="comma-separated names (default: every preset for the device)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "overhead.jsonl")
    args = parser.parse_args(argv)
    names = args.presets.split(",") if args.presets else default_presets(args.device)
    extra = [f"--{k}={v}" for k, v in (("threads", args.threads), ("repeats", args.repeats)) if v]
    rows = []
    for name in names:
        done = subprocess.run([sys.executable, str(HERE / "overhead.py"), "--preset", name, "--device", args.device,
                               *extra], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        rows.append(row(result))
        print(rows[-1], flush=True)
    print("\n| Preset | Device | Run | Time patched / unpatched: best / median / median CPU time | Extra peak "
          "memory | From Image vs one full step |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

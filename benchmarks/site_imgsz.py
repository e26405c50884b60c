"""The site detector's input size on 720p video: hard-hat status F1 and frames/s of the whole
site-safety flow at budget `full`, per size, on two synthetic 720p site clips (seed 5 is
flow_budget.py's clip, seed 17 a second one). Each run is its own process; speed ratios are
against the first size in this run.

    python benchmarks/site_imgsz.py [--sizes 416 640 768 960] [--seeds 5 17]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import run_measure  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[416, 640, 768, 960])
    ap.add_argument("--seeds", type=int, nargs="+", default=[5, 17])
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    from pipeline.synth.site_data import site_video

    rows = {}
    for seed in a.seeds:
        clip = CACHE / (f"site_720p_{a.seconds:g}s_empty0.5.mp4" if seed == 5 else f"site_720p_{a.seconds:g}s_empty0.5_seed{seed}.mp4")
        if not clip.exists():
            site_video(clip, seconds=a.seconds, seed=seed, fps=15, size=(1280, 720), empty=0.5)
        for n in a.sizes:
            rows[seed, n] = run_measure(str(ROOT / "benchmarks" / "flow_budget.py"), f"seed {seed}, {n} px",
                                        ["--clip", str(clip), "--measure", "site-flow", "--budget", "full", "--imgsz", str(n)])
    print("\n| input size | " + " | ".join(f"F1 (seed {s}) | frames/s (seed {s}) | x {a.sizes[0]} px" for s in a.seeds) + " |")
    print("|---|" + "---|---|---|" * len(a.seeds))
    for n in a.sizes:
        print(f"| {n} | " + " | ".join(f"{rows[s, n]['hardhat_f1']:.3f} | {rows[s, n]['fps']:.2f} | "
                                      f"{rows[s, n]['fps'] / rows[s, a.sizes[0]]['fps']:.2f}" for s in a.seeds) + " |")


if __name__ == "__main__":
    main()

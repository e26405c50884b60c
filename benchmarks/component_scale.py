"""The component segmenter's input scale on 720p drone video: component mIoU, condition F1 and
frames/s of the damage-survey stage chain at each budget, per scale, on flow_budget.py's clip
(a 10 s synthetic 720p pass, half over intact facade). Each run is its own process; speed ratios
are against the first scale at the same budget, in this run.

    python benchmarks/component_scale.py [--scales 0.25 0.375 0.5] [--budgets full balanced fast]
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
    ap.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.375, 0.5])
    ap.add_argument("--budgets", nargs="+", default=["full", "balanced", "fast"])
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    from pipeline.synth.video import facade_video

    clip = CACHE / f"pass_720p_{a.seconds:g}s_intact0.5.mp4"
    if not clip.exists():
        facade_video(clip, seconds=a.seconds, seed=11, fps=30, size=(1280, 720), intact=0.5)
    rows = {}
    for b in a.budgets:
        for s in a.scales:
            rows[b, s] = run_measure(str(ROOT / "benchmarks" / "flow_budget.py"), f"budget {b}, component scale {s:g}",
                                     ["--clip", str(clip), "--measure", "pipe", "--budget", b, "--component-scale", str(s)])
    lines = [f"| budget | component input scale | frames/s | x scale {a.scales[0]:g} | component mIoU | condition F1 | damage IoU | frames flagged by the condition screen |",
             "|---|---|---|---|---|---|---|---|"]
    for (b, s), r in rows.items():
        lines.append(f"| {b} | {s:g} | {r['fps']:.2f} | {r['fps'] / rows[b, a.scales[0]]['fps']:.2f} | {r['component_miou']:.3f} | "
                     f"{r['condition_f1']:.3f} | {r['damage_iou']:.3f} | "
                     f"{r.get('screen_flagged', {}).get('component_condition', 0)} of {r['frames']} |")
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    (ROOT / "benchmarks" / "results" / "component_scale.md").write_text(
        "### Component segmenter's input scale, damage-survey stage chain on a 10 s 720p synthetic pass "
        "(`python benchmarks/component_scale.py`)\n\n" + md)


if __name__ == "__main__":
    main()

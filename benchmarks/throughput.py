"""Throughput of the damage-survey flow on a 1280x720 synthetic drone pass, against two
references measured in the same run: decode-only (the floor) and a naive run of every model
on every full-resolution frame. Each measurement runs in its own process so peak memory is its own.

    python benchmarks/throughput.py [--seconds 30] [--naive-frames 60] [--flow-frames 0 (= all)]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import measure_decode, report_result  # noqa: E402
CACHE = ROOT / "benchmarks" / ".cache"


def measure_naive(clip: Path, n: int) -> dict:
    """Every model on every frame at full resolution, one frame at a time, no reuse."""
    from benchmarks._common import naive_damage_pipeline
    from pipeline.sources import SourceOptions, open_source

    pipe = naive_damage_pipeline()
    t = time.perf_counter()
    frames = 0
    for f in open_source(clip, SourceOptions(max_frames=n)):
        pipe([f])
        frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - t}


def measure_flow(clip: Path, n: int, stride: int) -> dict:
    from flows.damage_survey import damage_survey

    from benchmarks._common import shipped_flow_config

    with tempfile.TemporaryDirectory() as d:
        shipped_flow_config(Path(d) / "flow.yaml", {"stride": stride, **({"max_frames": n} if n else {})})
        t = time.perf_counter()
        s = damage_survey(str(clip), str(Path(d) / "out"), str(Path(d) / "flow.yaml"), progress=False)
        wall = time.perf_counter() - t
    # the flow's own busy time (chunks, outputs) excludes Prefect's ~15 s server start-up
    return {"frames": s["frames_processed"], "seconds": s["frames_processed"] / s["fps"], "wall_with_prefect_s": wall,
            "source_frames_covered": s["frames_processed"] * stride}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--naive-frames", type=int, default=60)
    ap.add_argument("--flow-frames", type=int, default=0)
    ap.add_argument("--measure", choices=["decode", "naive", "flow"])
    ap.add_argument("--clip", type=Path)
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--stride", type=int, default=1)
    a = ap.parse_args()
    if a.measure:
        r = {"decode": lambda: measure_decode(a.clip, a.n), "naive": lambda: measure_naive(a.clip, a.n),
             "flow": lambda: measure_flow(a.clip, a.n, a.stride)}[a.measure]()
        report_result(r)
        return
    from pipeline.synth.video import facade_video

    clip = CACHE / f"pass_720p_{a.seconds:g}s.mp4"
    if not clip.exists():
        facade_video(clip, seconds=a.seconds, seed=11, fps=30, size=(1280, 720))
    from benchmarks._common import run_measure

    rows = {}
    for name, args in [("decode-only", ["--measure", "decode"]),
                       ("naive (all models, full res)", ["--measure", "naive", "--n", str(a.naive_frames)]),
                       ("flow (shipped config)", ["--measure", "flow", "--n", str(a.flow_frames)]),
                       ("flow, stride 2", ["--measure", "flow", "--n", str(a.flow_frames), "--stride", "2"])]:
        rows[name] = run_measure(__file__, name, ["--clip", str(clip), *args])
    naive, flow = rows["naive (all models, full res)"]["fps"], rows["flow (shipped config)"]["fps"]
    dec = rows["decode-only"]["fps"]
    s2 = rows["flow, stride 2"]
    print(f"\nflow / naive = {flow / naive:.2f}x   flow / decode-only = {flow / dec:.3f}")
    print(f"stride 2 covers {s2['source_frames_covered']} source frames at {s2['source_frames_covered'] / s2['seconds']:.2f} source frames/s "
          f"({s2['source_frames_covered'] / s2['seconds'] / naive:.2f}x naive)")
    (CACHE / "throughput.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

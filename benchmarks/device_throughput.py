"""Each flow's stage chain on the CPU and on a GPU, on the same decoded frames, in one run.

    python benchmarks/device_throughput.py [--seconds 10] [--budgets full balanced]

Frames are decoded once up front, so the figures are the models' and stages' own frames/s (the
decode-only rate is printed beside them: the floor a whole flow sits on). The CPU uses
INSPECTFLOW_THREADS threads (default: all cores). Needs a CUDA device; without one it says so and
measures the CPU alone."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks._common import ROOT, measure_decode  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"


def clip_for(flow: str, seconds: float) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    if flow == "damage-survey":
        from pipeline.synth.video import facade_video

        out = CACHE / f"device_pass_720p_{seconds:g}s.mp4"
        if not out.exists():
            facade_video(out, seconds=seconds, seed=11, fps=30, size=(1280, 720), progress=False)
    else:
        from pipeline.synth.site_data import site_video

        out = CACHE / f"device_site_720p_{seconds:g}s.mp4"
        if not out.exists():
            site_video(out, seconds=seconds, seed=5, fps=10, size=(1280, 720), progress=False)
    return out


def time_chain(flow: str, budget: str, device: str, frames: list, profile: bool = False) -> float:
    """Frames/s of the flow's shipped stage chain at `budget` on `device` (first batch untimed: warm-up)."""
    from pipeline.runner import DEFAULT_CONFIGS, Pipeline, load_flow_config

    if flow == "damage-survey":
        cfg, base = load_flow_config(DEFAULT_CONFIGS / "damage-survey.yaml")
    else:
        from pipeline.safety.flow_config import load_config

        cfg, base = load_config(DEFAULT_CONFIGS / "site-safety.yaml")
    pipe = Pipeline.from_config(cfg.model_copy(update={"budget": budget, "device": device}), base)
    b = cfg.batch_size
    pipe(frames[:b])
    pipe.reset()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    for i in range(0, len(frames), b):
        pipe(frames[i : i + b])
    sync()
    fps = len(frames) / (time.perf_counter() - t)
    if prof is not None:
        import pstats

        prof.disable()
        print(f"  -- {flow}, budget {budget}, {device}: where the time goes (top 15 by own time)")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return fps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--flows", nargs="+", default=["damage-survey", "site-safety"])
    ap.add_argument("--budgets", nargs="+", default=["full", "balanced"])
    ap.add_argument("--profile", choices=["cpu", "cuda"], help="also print a cProfile of the chain on this device")
    a = ap.parse_args()
    from pipeline.sources import open_source

    threads = int(os.environ.get("INSPECTFLOW_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none: CPU only"
    print(f"CPU: {threads} threads; GPU: {gpu}; torch {torch.__version__}")
    for flow in a.flows:
        clip = clip_for(flow, a.seconds)
        frames = list(open_source(str(clip)))
        dec = measure_decode(clip, 0)
        print(f"\n{flow}: {len(frames)} frames of {frames[0].image.shape[1]}x{frames[0].image.shape[0]}; "
              f"decode only {dec['frames'] / dec['seconds']:.1f} frames/s")
        for budget in a.budgets:
            fps = {d: time_chain(flow, budget, d, frames, a.profile == d) for d in devices}
            line = "  ".join(f"{d} {v:7.2f} frames/s" for d, v in fps.items())
            ratio = f"  cuda/cpu {fps['cuda'] / fps['cpu']:.2f}x" if "cuda" in fps else ""
            print(f"  budget {budget:9s} {line}{ratio}", flush=True)


if __name__ == "__main__":
    main()

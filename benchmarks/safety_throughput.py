"""Throughput of the site-safety flow on a 1280x720 synthetic site video, against two references
measured in the same run: decode-only, and two separate full models on every full-resolution frame
(a person-pose model and a separate hat detector, as a two-model pipeline would run them; here the
shipped network run twice at imgsz 1280). Each measurement runs in its own process.

    python benchmarks/safety_throughput.py [--seconds 20] [--naive-frames 40]
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
SHIPPED = ROOT / "flows" / "configs" / "site-safety.yaml"


def status_f1(events: Path, labels: Path) -> float:
    return f1_of((json.loads(x) for x in events.read_text().splitlines()), labels)


def f1_of(events, labels: Path) -> float:
    """Per frame and worker: a prediction is right when its head point falls in a GT worker's head box
    and its worn / no-hat call matches the GT. F1 over the events' frames (unknown calls count as misses)."""
    gt = {json.loads(x)["frame"]: json.loads(x) for x in labels.read_text().splitlines() if x.strip()}
    tp = fp = fn = 0
    for e in events:
        heads = gt[e["frame"]]["heads"]
        used = set()
        for w in e["workers"]:
            if w["status"] == "unknown":
                continue
            hit = next((i for i, h in enumerate(heads) if i not in used and h["box"][0] <= w["head"][0] <= h["box"][2]
                        and h["box"][1] <= w["head"][1] <= h["box"][3]), None)
            if hit is not None and (w["status"] == "worn") == heads[hit]["wears"]:
                tp += 1
                used.add(hit)
            else:
                fp += 1
        fn += len(heads) - len(used)
    return 2 * tp / max(2 * tp + fp + fn, 1)


def measure_naive(clip: Path, n: int, every: int = 1) -> dict:
    """Every `every`-th frame (at most n), both models at 1280 px, untracked; the shipped hat rule on the
    pose model's boxes gives the status F1 of those frames, so quality is measured alongside."""
    from pipeline.models.yolo import load_yolo
    from pipeline.safety.core import Detections
    from pipeline.safety.rule import decide
    from pipeline.sources import SourceOptions, open_source
    from stages import load_stage, parse_stage

    w = ROOT / "data" / "weights" / "safety.pt"
    pose, hats = load_yolo(w), load_yolo(w)
    rule = load_stage(ROOT / "stages" / "configs" / "hardhat_rule.yaml").rule
    det_conf = parse_stage(ROOT / "stages" / "configs" / "safety_detector.yaml")[1].conf
    t, events = time.perf_counter(), []
    for f in open_source(clip, SourceOptions(stride=every, max_frames=n or None)):
        r = pose.predict(f.image, imgsz=1280, conf=det_conf, verbose=False)[0]
        hats.predict(f.image, imgsz=1280, conf=det_conf, verbose=False)
        events.append({"frame": f.index, "workers": [{"status": d.status, "head": d.head.point}
                                                     for d in decide(Detections.from_ultralytics(r), rule)]})
    seconds = time.perf_counter() - t
    return {"frames": len(events), "seconds": seconds, "hardhat_f1": round(f1_of(events, clip.with_suffix(".labels.jsonl")), 4)}


def measure_flow(clip: Path, n: int, reuse: bool = False) -> dict:
    import yaml

    from flows.site_safety import site_safety

    with tempfile.TemporaryDirectory() as d:
        cfg = yaml.safe_load(SHIPPED.read_text())
        cfg["stages"] = [str((SHIPPED.parent / s).resolve()) for s in cfg["stages"]]
        cfg["reuse"]["enabled"] = reuse
        if n:
            cfg["source"]["max_frames"] = n
        (Path(d) / "flow.yaml").write_text(yaml.safe_dump(cfg))
        s = site_safety(str(clip), str(Path(d) / "out"), str(Path(d) / "flow.yaml"), progress=False)
        f1 = status_f1(Path(d) / "out" / "events.jsonl", clip.with_suffix(".labels.jsonl"))
    # the flow's busy time excludes Prefect's start-up
    return {"frames": s["frames_processed"], "seconds": s["frames_processed"] / s["fps"], "hardhat_f1": f1,
            "workers": s["workers_seen"], "violations": len(s["violations"]), "reused": s["frames_reused"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--naive-frames", type=int, default=40)
    ap.add_argument("--measure", choices=["decode", "naive", "flow", "flow-reuse"])
    ap.add_argument("--clip", type=Path)
    ap.add_argument("--n", type=int, default=0)
    a = ap.parse_args()
    if a.measure:
        r = {"decode": measure_decode, "naive": measure_naive, "flow": measure_flow,
             "flow-reuse": lambda c, n: measure_flow(c, n, reuse=True)}[a.measure](a.clip, a.n)
        report_result(r)
        return
    from benchmarks._common import run_measure
    from pipeline.synth.site_data import site_video

    clip = CACHE / f"site_720p_{a.seconds:g}s.mp4"
    if not clip.exists():
        site_video(clip, seconds=a.seconds, seed=5, fps=15, size=(1280, 720))
    rows = {name: run_measure(__file__, name, ["--clip", str(clip), *args]) for name, args in [
        ("decode-only", ["--measure", "decode"]),
        ("naive (2 models, full res, no tracking)", ["--measure", "naive", "--n", str(a.naive_frames)]),
        ("flow (shipped config)", ["--measure", "flow"]),
        ("flow + frame reuse", ["--measure", "flow-reuse"]),
    ]}
    flow, naive = rows["flow (shipped config)"]["fps"], rows["naive (2 models, full res, no tracking)"]["fps"]
    reuse = rows["flow + frame reuse"]
    print(f"\nflow / naive = {flow / naive:.2f}x   flow / decode-only = {flow / rows['decode-only']['fps']:.3f}")
    print(f"hard-hat status F1 vs the clip's labels: flow {rows['flow (shipped config)']['hardhat_f1']:.3f}, "
          f"with reuse {reuse['hardhat_f1']:.3f} ({reuse['reused']} frames reused, {reuse['fps'] / flow:.2f}x the flow)")
    (CACHE / "safety_throughput.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""8-bit segmenters (`precision: int8`) against the float ones, both under ONNX Runtime, in the same run.

    python benchmarks/int8.py [--frames 60] [--test-images 150] [--reduce-range]

For the component and damage segmenters as the damage-survey flow loads them:
- ms per 720p frame on the cached 720p pass of benchmarks/flow_budget.py (made if missing), best of 3,
  and the float / int8 ratio; also the one-time cost of quantizing (calibration frames + rewrite);
- on that pass: IoU per class against its labels for both precisions, and the share of mask pixels
  the two agree on;
- on the synthetic test split (data/synth, `dvc repro generate`; skipped when absent), at the scale
  the models were trained at: IoU per class against its labels;
- on the real thermal drone pass (../shared/data/real/footage; skipped when absent), which has no labels:
  the share of mask pixels the two agree on, and the share of pixels each calls damaged.
Writes benchmarks/results/int8.{json,md} (int8_reduce_range.{json,md} with --reduce-range).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.flow_budget import CACHE  # noqa: E402
from benchmarks.stage_costs import best_of  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SYNTH = ROOT / "data" / "synth"
THERMAL = ROOT.parent / "shared" / "data" / "real" / "footage" / "facade_thermal_flight"
STAGES = {"component_segmentation": (ROOT / "stages" / "configs" / "component_segmentation.yaml", "components", 8),
          "damage_segmentation": (ROOT / "stages" / "configs" / "damage_segmentation.yaml", "damage", 4)}


def iou(conf: np.ndarray) -> list[float]:
    from pipeline.metrics import iou_per_class

    return [round(float(v), 4) for v in iou_per_class(conf)[1:]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60, help="frames of the 720p pass (every 5th of its 300)")
    ap.add_argument("--test-images", type=int, default=150)
    ap.add_argument("--reduce-range", action="store_true", help="7-bit weights, as chosen on a CPU without VNNI "
                    "(pipeline.models.int8.REDUCE_RANGE), to see what they cost on this one")
    a = ap.parse_args()
    if a.reduce_range:
        import pipeline.models.int8 as int8

        int8.REDUCE_RANGE = True

    import tempfile

    import cv2
    import yaml

    import pipeline.models.onnx as onnx_runtime
    from pipeline.metrics import confusion
    from pipeline.sources import SourceOptions, open_source
    from pipeline.synth.video import facade_video, frame_labels
    from stages import load_stage

    clip = CACHE / "pass_720p_10s_intact0.5.mp4"
    if not clip.exists():
        facade_video(clip, seconds=10, seed=11, fps=30, size=(1280, 720), intact=0.5)
    labels = dict(np.load(clip.with_suffix(".labels.npz")))
    frames = list(open_source(clip, SourceOptions(stride=max(1, 300 // a.frames), max_frames=a.frames)))
    images = [f.image for f in frames]
    tests = sorted((SYNTH / "images" / "test").glob("*.jpg"))[: a.test_images] if SYNTH.exists() else []
    thermal = sorted(p for p in THERMAL.iterdir() if p.suffix.lower() in (".jpg", ".png")) if THERMAL.exists() else []
    thermal_imgs = [cv2.imread(str(p)) for p in thermal]

    # an empty export cache, so that "first use" times the export (and the quantizing) from scratch
    onnx_runtime.CACHE = Path(tempfile.mkdtemp(prefix="inspectflow-int8-bench-"))
    from pipeline.models.int8 import has_vnni, reduce_range

    res: dict = {"frames": len(frames), "synthetic_test_images": len(tests), "thermal_frames": len(thermal),
                 "cpu_vnni": has_vnni(), "reduce_range": reduce_range()}
    for name, (path, label_dir, n_cls) in STAGES.items():
        spec = yaml.safe_load(path.read_text())
        spec["model"] = str((path.parent / spec["model"]).resolve())
        spec["runtime"] = "onnxruntime"
        row: dict = {}
        stages = {}
        for prec in ("fp32", "int8"):
            st = stages[prec] = load_stage({**spec, "precision": prec})
            t = time.perf_counter()
            for _ in range(4):  # past FIXED_AFTER calls: the frames' own fixed-size graph is exported (and quantized)
                st.predict(images[:1])
            row[f"{prec}_first_use_s"] = round(time.perf_counter() - t, 1)
        masks = {p: st.predict(images) for p, st in stages.items()}
        t = {p: best_of(lambda st=st: st.predict(images), reps=3) for p, st in stages.items()}
        row["ms_per_frame"] = {p: round(1000 * v / len(images), 1) for p, v in t.items()}
        row["speed_ratio"] = round(t["fp32"] / t["int8"], 2)
        row["pass_same_pixels"] = round(float(np.mean([(x == y).mean() for x, y in zip(masks["fp32"], masks["int8"])])), 5)
        key = "components" if name == "component_segmentation" else "damage"
        for p in stages:
            conf = np.zeros((n_cls, n_cls), np.int64)
            for f, m in zip(frames, masks[p]):
                comp, _, dmg = frame_labels(labels, f.index)
                conf += confusion(m, comp if key == "components" else dmg, n_cls)
            row.setdefault("pass_iou", {})[p] = iou(conf)
        if tests:
            one = {p: load_stage({**spec, "precision": p, "input_scale": 1.0}) for p in stages}
            conf = {p: np.zeros((n_cls, n_cls), np.int64) for p in stages}
            for f in tests:
                img = cv2.imread(str(f))
                gt = cv2.imread(str(SYNTH / label_dir / "test" / f"{f.stem}.png"), cv2.IMREAD_UNCHANGED)
                for p, st in one.items():
                    conf[p] += confusion(st.predict([img])[0], gt, n_cls)
            row["synthetic_test_iou"] = {p: iou(c) for p, c in conf.items()}
        if thermal_imgs:
            tm = {p: [m for i in range(0, len(thermal_imgs), 4) for m in st.predict(thermal_imgs[i : i + 4])]
                  for p, st in stages.items()}
            row["thermal_same_pixels"] = round(float(np.mean([(x == y).mean() for x, y in zip(tm["fp32"], tm["int8"])])), 5)
            row["thermal_foreground_share"] = {p: round(float(np.mean([(m > 0).mean() for m in ms])), 4) for p, ms in tm.items()}
        res[name] = row
        print(name, json.dumps(row), flush=True)

    md = ["### 8-bit segmenters against float, ONNX Runtime on this machine's CPU (`python benchmarks/int8.py`)", "",
          f"{len(frames)} frames of the 720p pass; {len(tests)} synthetic test images; {len(thermal)} real thermal frames. "
          f"CPU with VNNI: {res['cpu_vnni']}; 7-bit weights: {res['reduce_range']}.", "",
          "| segmenter | fp32 ms/frame | int8 ms/frame | speed ratio | pass IoU per class fp32 / int8 | synthetic test IoU fp32 / int8 "
          "| pixels equal: pass / thermal | first use fp32 / int8 (s) |", "|---|---|---|---|---|---|---|---|"]
    for name in STAGES:
        r = res[name]
        syn = r.get("synthetic_test_iou")
        syn_s = f"{syn['fp32']} / {syn['int8']}" if syn else "skipped"
        th_s = f"{r['thermal_same_pixels']:.2%}" if "thermal_same_pixels" in r else "skipped"
        md.append(f"| {name.split('_')[0]} | {r['ms_per_frame']['fp32']} | {r['ms_per_frame']['int8']} | {r['speed_ratio']}x "
                  f"| {r['pass_iou']['fp32']} / {r['pass_iou']['int8']} | {syn_s} | {r['pass_same_pixels']:.2%} / {th_s} "
                  f"| {r['fp32_first_use_s']} / {r['int8_first_use_s']} |")
    text = "\n".join(md) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = "int8_reduce_range" if a.reduce_range else "int8"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2))
    (RESULTS / f"{name}.md").write_text(text)


if __name__ == "__main__":
    main()

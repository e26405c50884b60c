"""Accuracy of the shipped weights, with the issue's targets beside each figure.

1. Synthetic test split (component mIoU, damage IoU per class, condition accuracy/macro-F1).
2. Real crack sets from ../shared/data/real (skipped when absent): crack IoU and F1 at 2 px tolerance.
3. A synthetic 720p drone pass run through the stages at the flow's own scales, scored against
   the clip's labels, and the flight roll-up's component count against the true one.

    python benchmarks/accuracy.py [--frames-every 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core import COMPONENT_CLASSES, DAMAGE_CLASSES  # noqa: E402
from pipeline.metrics import confusion, iou_per_class  # noqa: E402


def clip_scores(clip: Path, every: int) -> dict:
    from pipeline.runner import Pipeline, load_flow_config
    from pipeline.sources import SourceOptions, open_source
    from pipeline.synth.video import frame_labels

    cfg, base = load_flow_config(ROOT / "flows" / "configs" / "damage-survey.yaml")
    pipe = Pipeline.from_config(cfg, base)
    labels = dict(np.load(clip.with_suffix(".labels.npz")))
    cc, dc = np.zeros((8, 8), np.int64), np.zeros((4, 4), np.int64)
    for f in open_source(clip, SourceOptions(stride=every)):
        (r,) = pipe([f])
        comp, _, dmg = frame_labels(labels, f.index)
        cc += confusion(r.component_mask, comp, 8)
        dc += confusion(r.damage_mask, dmg, 4)
    ci, di = iou_per_class(cc), iou_per_class(dc)
    return {"component_miou_fg": round(float(np.nanmean(ci[1:])), 4),
            "component_iou": dict(zip(COMPONENT_CLASSES, np.round(ci, 4).tolist())),
            "damage_iou": dict(zip(DAMAGE_CLASSES, np.round(di, 4).tolist()))}


def true_component_count(clip: Path, frames: int, min_px: int = 400) -> int:
    """Instances that some frame (of the first `frames`) shows with at least `min_px` pixels."""
    from pipeline.synth.video import frame_labels

    labels = dict(np.load(clip.with_suffix(".labels.npz")))
    seen = set()
    for i in range(0, min(frames, len(labels["homographies"])), 5):
        _, inst, _ = frame_labels(labels, i)
        ids, n = np.unique(inst, return_counts=True)
        seen |= {int(k) for k, c in zip(ids, n) if k and c >= min_px}
    return len(seen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-every", type=int, default=10)
    ap.add_argument("--clip-seconds", type=float, default=30)
    ap.add_argument("--rollup-frames", type=int, default=300)
    a = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    g = params["generate"]
    if not (ROOT / g["out"] / "crops" / "test.csv").exists():
        from pipeline.synth.dataset import generate

        # the test split alone: generation is seeded per split and image, so it equals dvc's
        generate(ROOT / g["out"], {"test": g["test"]}, g["size"], g["views_per_facade"], g["crop_size"], g["seed"])
    from pipeline.evaluate import evaluate

    ev = params["evaluate"] | {"out": str(ROOT / "benchmarks" / ".cache" / "metrics.json"),
                               "plots": str(ROOT / "benchmarks" / ".cache" / "plots")}
    m = evaluate({k: str(ROOT / v) if k in ("data", "weights", "real") else v for k, v in ev.items()})

    from pipeline.synth.video import facade_video

    clip = ROOT / "benchmarks" / ".cache" / f"pass_720p_{a.clip_seconds:g}s.mp4"
    if not clip.exists():
        facade_video(clip, seconds=a.clip_seconds, seed=11, fps=30, size=(1280, 720))
    m["clip"] = clip_scores(clip, a.frames_every)
    # linking: how many physical components the roll-up reports, against the truth
    import tempfile

    from flows.damage_survey import damage_survey

    n = a.rollup_frames
    from benchmarks._common import shipped_flow_config

    with tempfile.TemporaryDirectory() as d:
        shipped_flow_config(Path(d) / "flow.yaml", {"max_frames": n})
        s = damage_survey(str(clip), str(Path(d) / "out"), str(Path(d) / "flow.yaml"), progress=False)
    m["clip"]["rollup"] = {"frames": n, "views": s["rollup"]["views"], "unique_components": s["rollup"]["unique_components"],
                           "true_components": true_component_count(clip, n)}

    print(json.dumps(m, indent=2))
    rc = m["real_cracks"]
    print("\nfigure                                   measured   target")
    print(f"component mIoU, synthetic test split      {m['components']['miou_fg']:.3f}    >= 0.85")
    print(f"component mIoU, 720p pass at flow scale   {m['clip']['component_miou_fg']:.3f}")
    print(f"damage IoU crack/spall/rebar (synthetic)  {m['damage']['iou']['crack']:.3f} / {m['damage']['iou']['spall']:.3f} / {m['damage']['iou']['rebar']:.3f}")
    print(f"condition accuracy / macro-F1             {m['condition']['accuracy']:.3f} / {m['condition']['macro_f1']:.3f}    macro-F1 >= 0.80")
    ro = m["clip"]["rollup"]
    print(f"roll-up over {ro['frames']} frames: {ro['views']} views -> {ro['unique_components']} components (truth {ro['true_components']})")
    if isinstance(rc, dict):
        for k, v in rc.items():
            print(f"{k:18s} crack IoU {v['crack_iou']:.3f}  F1@2px {v['f1_tol2']:.3f}" + ("    IoU >= 0.40" if k == "uav75_val" else ""))
    (ROOT / "benchmarks" / ".cache" / "accuracy.json").write_text(json.dumps(m, indent=2))


if __name__ == "__main__":
    main()

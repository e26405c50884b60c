"""Crack IoU and F1 (2 px tolerance) on the held-out real crack sets, for several damage checkpoints
scored in the same run; the first one is the baseline the others' ratios are taken against.

    python benchmarks/real_cracks.py                                 # the rows below
    python benchmarks/real_cracks.py --weights prev=/tmp/damage_prev.pt   # add a checkpoint of your own

Rows run stages/configs/damage_closeup.yaml (full resolution, 512 px tiles, flips, a 180-degree turn and
the transpose averaged), as
`evaluate` does, with the checkpoint swapped in: the synthetic-only weights (the baseline; it is
DVC-cached, so a fresh clone skips it and the next row is the baseline), the drone-frame weights damage.pt (also without the flips, and as the drone-frame config
damage_segmentation.yaml would run these photos, at half scale), and the shipped close-up weights.
Writes benchmarks/results/real_cracks.{json,md}. Skips when ../shared/data/real is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.evaluate import real_crack_scores  # noqa: E402
from pipeline.sinks import atomic_json  # noqa: E402
from pipeline.train.common import load_params  # noqa: E402
from pipeline.train.seg_data import EVAL_SETS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "data" / "real"))
    ap.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH", help="more checkpoints to score")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_cracks"))
    a = ap.parse_args()
    real = Path(a.real)
    if not real.exists():
        print(f"skipped: {real} not found")
        return
    drone = ROOT / "data/weights/damage.pt"
    # name -> (checkpoint, overrides of the close-up config)
    closeup = ROOT / "data/weights/damage_closeup.pt"
    plain = {"class_bias": {}, "min_area": {}}  # rows before the last two without the close-up config's crack bias and speck filter
    # name -> (checkpoint, overrides of the close-up config)
    models = {"synthetic only": (ROOT / "data/weights/damage_synth.pt", plain),
              "drone-frame config (damage.pt, half scale)": (drone, {"input_scale": 0.5, "tile": 768, "tta": [], **plain}),
              "damage.pt, full scale, no flips": (drone, {"tta": [], **plain}),
              "damage.pt, full scale, flips": (drone, {"tta": ["hflip", "vflip"], **plain}),
              "damage_closeup.pt, flips": (closeup, {"tta": ["hflip", "vflip"], **plain}),
              "damage_closeup.pt, flips + rot180 + transpose": (closeup, plain),
              "those passes, crack logit -0.5": (closeup, {"min_area": {}}),
              "shipped close-up (those passes, crack logit -0.5, crack specks under 20 px dropped)": (closeup, {})}
    for w in a.weights:
        name, _, path = w.partition("=")
        if not path:
            sys.exit(f"--weights wants NAME=PATH, got {w!r}")
        models[name] = (Path(path), {})
    # damage_synth.pt and the round-1 weights are DVC-cached, not shipped: on a fresh clone they exist only after dvc repro
    for name, (path, _) in list(models.items()):
        if not path.exists():
            print(f"row '{name}' skipped: {path} not here (dvc repro trains it)")
            del models[name]
    holdout = load_params(str(ROOT / "params.yaml"), "evaluate").get("holdout", {})  # the images no training run sees
    results = {name: real_crack_scores(path, real, holdout, f"{name}: ", **over) for name, (path, over) in models.items()}

    base = next(iter(results))
    lines = ["| model | " + " | ".join(f"{k} IoU | {k} F1@2px" for k in EVAL_SETS) + " |",
             "|---|" + "---|---|" * len(EVAL_SETS)]
    for name, r in results.items():
        cells = []
        for k in EVAL_SETS:
            iou, f1 = r[k]["crack_iou"], r[k]["f1_tol2"]
            ratio = iou / results[base][k]["crack_iou"] if results[base][k]["crack_iou"] else float("nan")
            cells += [f"{iou:.3f} ({ratio:.2f}x)", f"{f1:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    print(f"ratios: crack IoU against '{base}', measured in this run; target: UAV75 val IoU >= 0.40")
    atomic_json(a.out + ".json", {"baseline": base, "weights": {k: [str(v), o] for k, (v, o) in models.items()}, "results": results})
    Path(a.out + ".md").write_text(f"# Real crack sets (`python benchmarks/real_cracks.py`)\n\n{table}\n\n"
                                   f"Ratios are crack IoU against '{base}'. Target: UAV75 val IoU >= 0.40.\n")
    print(json.dumps({k: {s: v[s]["crack_iou"] for s in EVAL_SETS} for k, v in results.items()}))


if __name__ == "__main__":
    main()

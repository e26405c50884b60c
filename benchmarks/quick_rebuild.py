"""The quick rebuild's weights (data/quick/weights, `make repro-quick`) against the shipped ones (data/weights),
scored in the same run on the same data: the synthetic test split in data/quick/synth (the same 150 test views
the full pipeline draws), the held-out real crack sets, and the real Hard Hat Workers val photos.

    python benchmarks/quick_rebuild.py [--quick data/quick/weights] [--data data/quick/synth]

Each row is `pipeline.evaluate` on both weight sets (the shipped close-up weights on the crack photos; the quick
pipeline has no close-up rounds, so its drone-frame damage.pt scores them), plus the site detector's box mAP50
on the real val photos (ultralytics val at 512 px, the photo config's size). Ratios are quick / shipped.
Writes benchmarks/results/quick_rebuild.{json,md}. Needs `make repro-quick` first; skips the real rows when
../shared/data/real is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.evaluate import evaluate  # noqa: E402
from pipeline.sinks import atomic_json, atomic_write  # noqa: E402


def scores(weights: Path, closeup: str, data: Path, real: Path, tmp: Path) -> dict:
    m = evaluate({"data": str(data), "weights": str(weights), "closeup": closeup, "real": str(real),
                  "holdout": {"deepcrack": 50, "masonry": 40}, "out": str(tmp / "metrics.json"), "plots": str(tmp / "plots")})
    rows = {"component mIoU (synthetic test)": m["components"]["miou_fg"]}
    rows |= {f"{k} IoU (synthetic test)": m["damage"]["iou"][k] for k in ("crack", "spall", "rebar")}
    rows |= {"condition accuracy": m["condition"]["accuracy"], "condition macro-F1": m["condition"]["macro_f1"]}
    if isinstance(m["real_cracks"], dict):
        rows |= {f"crack IoU, {k}": v["crack_iou"] for k, v in m["real_cracks"].items()}
        rows |= {f"crack F1@2px, {k}": v["f1_tol2"] for k, v in m["real_cracks"].items()}
    if (real / "hardhat_workers").exists():
        rows["site detector box mAP50, real val"] = detector_map50(weights / "safety.pt", real / "hardhat_workers", tmp)
    return rows


def detector_map50(weights: Path, hardhat: Path, tmp: Path) -> float:
    from pipeline.models.yolo import ultralytics
    from pipeline.synth.site_data import real_hardhat_yolo

    data = real_hardhat_yolo(hardhat, tmp / "hardhat")
    r = ultralytics().YOLO(str(weights), task="pose").val(data=str(data), imgsz=512, batch=8, device="cpu", plots=False,
                                                           verbose=False, project=str(tmp / "val"), workers=0)
    return round(float(r.box.map50), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", type=Path, default=ROOT / "data" / "quick" / "weights")
    ap.add_argument("--shipped", type=Path, default=ROOT / "data" / "weights")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "quick" / "synth")
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    a = ap.parse_args()
    missing = [p for p in (a.quick / "components.pt", a.data / "images" / "test") if not p.exists()]
    if missing:
        sys.exit(f"{missing[0]} not found: run `make repro-quick` first (dvc repro data/quick/dvc.yaml)")
    with tempfile.TemporaryDirectory() as tmp:
        shipped = scores(a.shipped, "damage_closeup.pt", a.data, a.real, Path(tmp) / "shipped")
        quick = scores(a.quick, "damage.pt", a.data, a.real, Path(tmp) / "quick")
    lines = ["Quick rebuild vs shipped weights, same run, same data", "",
             "| measure | shipped | quick | quick / shipped |", "|---|---|---|---|"]
    for k, base in shipped.items():
        lines.append(f"| {k} | {base:.3f} | {quick[k]:.3f} | {quick[k] / base:.2f}x |" if base else f"| {k} | {base} | {quick[k]} | - |")
    table = "\n".join(lines) + "\n"
    print(table)
    res = ROOT / "benchmarks" / "results"
    atomic_json(res / "quick_rebuild.json", {"shipped": shipped, "quick": quick})
    atomic_write(res / "quick_rebuild.md", table)


if __name__ == "__main__":
    main()

"""Hard-hat decisions on real photos as a user gets them: `inspectflow predict DETECTOR RULE` at the
configs' own thresholds, scored on the 50 Hard Hat Workers val photos, one row per rule config.

    python benchmarks/safety_photos.py [--detector stages/configs/safety_photos.yaml]
                                       [--rules stages/configs/hardhat_rule.yaml stages/configs/hardhat_rule_photos.yaml]

benchmarks/safety_accuracy.py opens every threshold so AP sees the whole score range; here the
thresholds are the shipped ones, so AP, precision and recall are those of the written predictions.
The first rule is the baseline of the ratio column. Writes benchmarks/results/safety_photos.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.safety_accuracy import real_gt  # noqa: E402
from pipeline.safety.metrics import evaluate, from_predictions  # noqa: E402

CONFIGS = ROOT / "stages" / "configs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", type=Path, default=CONFIGS / "safety_photos.yaml")
    ap.add_argument("--rules", type=Path, nargs="+", default=[CONFIGS / "hardhat_rule.yaml", CONFIGS / "hardhat_rule_photos.yaml"])
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "real" / "hardhat_workers")
    a = ap.parse_args()
    if not a.real.exists():
        print(f"skipped: {a.real} not found")
        return
    images, gts = real_gt(a.real)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rule in a.rules:
            out = Path(tmp) / rule.stem
            r = subprocess.run([sys.executable, "-m", "pipeline", "predict", str(a.detector), str(rule),
                                "--source", str(images[0].parent), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
            if r.returncode:
                sys.exit(r.stderr[-2000:])
            rows[rule.name] = m = evaluate(from_predictions(out / "predictions.jsonl"), gts)
            print(rule.name, json.dumps({c: round(m[c]["AP"], 4) for c in ("wearer", "non_wearer")}), flush=True)
    base = next(iter(rows.values()))
    lines = [f"Hard Hat Workers val, {len(images)} photos, through `inspectflow predict {a.detector.name} RULE`",
             "", "| rule config | wearer AP | P | R | non-wearer AP | P | R | heads missed | wearer / non-wearer AP vs first |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        w, n = m["wearer"], m["non_wearer"]
        lines.append(f"| {name} | {100 * w['AP']:.1f} | {w['precision']:.3f} | {w['recall']:.3f} | {100 * n['AP']:.1f} | "
                     f"{n['precision']:.3f} | {n['recall']:.3f} | {m['head_miss_rate']:.1%} | "
                     f"{w['AP'] / base['wearer']['AP']:.2f}x / {n['AP'] / base['non_wearer']['AP']:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    res = ROOT / "benchmarks" / "results"
    (res / "safety_photos.json").write_text(json.dumps(rows, indent=1))
    (res / "safety_photos.md").write_text(table)


if __name__ == "__main__":
    main()

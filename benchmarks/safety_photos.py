"""Hard-hat decisions on real photos as a user gets them: `inspectflow predict DETECTOR RULE` at the
configs' own thresholds, scored on the 50 Hard Hat Workers val photos, one row per rule config.

    python benchmarks/safety_photos.py [--detector stages/configs/safety_photos.yaml] [--split val|train]
                                       [--rules stages/configs/hardhat_rule.yaml stages/configs/hardhat_rule_photos.yaml]

benchmarks/safety_accuracy.py opens every threshold so AP sees the whole score range; here the
thresholds are the shipped ones, so AP, precision and recall are those of the written predictions.
The first rule is the baseline of the ratio column. A rule with `mirrored_borders: true` is also run with
it off, and one with a `hat_check:` without it, in the rows before it, and a detector with `tta:` also runs
without it (with the check off: a check is trained beside one detector's passes); those rows, and one more,
write every no_hat call (no head check, `no_hat_min_score: 0`), and one more runs without the head check alone,
so each extra's gain is measured in the same run. Writes benchmarks/results/safety_photos.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import stage_config_copy  # noqa: E402
from pipeline.safety.metrics import real_gt  # noqa: E402
from pipeline.safety.metrics import evaluate, from_predictions  # noqa: E402

CONFIGS = ROOT / "stages" / "configs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", type=Path, default=CONFIGS / "safety_photos.yaml")
    ap.add_argument("--rules", type=Path, nargs="+", default=[CONFIGS / "hardhat_rule.yaml", CONFIGS / "hardhat_rule_photos.yaml"])
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "real" / "hardhat_workers")
    ap.add_argument("--split", default="val", help="train: the photos the detector was tuned on, where settings are chosen "
                    "(results not written)")
    a = ap.parse_args()
    if not a.real.exists():
        print(f"skipped: {a.real} not found")
        return
    images, gts = real_gt(a.real, a.split)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        plain = a.detector
        if yaml.safe_load(a.detector.read_text()).get("tta"):
            plain = stage_config_copy(a.detector, Path(tmp) / "detector_no_tta.yaml", tta=None)
        for rule in a.rules:
            cfg = {"mirrored_borders": False, "hat_check": None, "head_check": None, "no_hat_min_score": 0,
                   **yaml.safe_load(rule.read_text())}
            for key in ("hat_check", "head_check"):
                if cfg[key]:
                    cfg[key] = str((rule.parent / cfg[key]).resolve())
            # the photo chain's extras, added one at a time, so each one's gain is measured in this run
            seen = [(a.detector, cfg)]
            every = {"no_hat_min_score": 0, "head_check": None}  # every no_hat call written
            for label, detector, off in (
                    ("detector without tta, no border reading or hat check", plain, {"mirrored_borders": False, "hat_check": None, **every}),
                    ("detector without tta, no hat check", plain, {"hat_check": None, **every}),
                    ("no border reading or hat check", a.detector, {"mirrored_borders": False, "hat_check": None, **every}),
                    ("no hat check", a.detector, {"hat_check": None, **every}),
                    ("every no_hat call written (no head check, no_hat_min_score 0)", a.detector, every),
                    ("no head check", a.detector, {"head_check": None})):
                step = (detector, {**cfg, **off})
                if step not in seen:
                    seen.append(step)
                    path = Path(tmp) / f"{rule.stem}_{len(runs)}.yaml"
                    path.write_text(yaml.safe_dump(step[1]))
                    runs.append((f"{rule.name}, {label}", detector, path))
            runs.append((rule.name, a.detector, rule))
        for name, detector, rule in runs:
            out = Path(tmp) / rule.stem
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "pipeline", "predict", str(detector), str(rule),
                                "--source", str(images[0].parent), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - t
            if r.returncode:
                sys.exit(r.stderr[-2000:])
            rows[name] = m = evaluate(from_predictions(out / "predictions.jsonl"), gts)
            m["predict_s"] = round(seconds, 1)
            print(name, json.dumps({c: round(m[c]["AP"], 4) for c in ("wearer", "non_wearer")}), flush=True)
    base = next(iter(rows.values()))
    lines = [f"Hard Hat Workers {a.split}, {len(images)} photos, through `inspectflow predict {a.detector.name} RULE`",
             "", "| rule config | wearer AP | P | R | F1 | non-wearer AP | P | R | F1 | heads missed | wearer / non-wearer AP vs first "
             "| predict s (with start-up) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        w, n = m["wearer"], m["non_wearer"]
        lines.append(f"| {name} | {100 * w['AP']:.1f} | {w['precision']:.3f} | {w['recall']:.3f} | {w['F1']:.3f} | "
                     f"{100 * n['AP']:.1f} | {n['precision']:.3f} | {n['recall']:.3f} | {n['F1']:.3f} | {m['head_miss_rate']:.1%} | "
                     f"{w['AP'] / base['wearer']['AP']:.2f}x / {n['AP'] / base['non_wearer']['AP']:.2f}x | {m['predict_s']} |")
    table = "\n".join(lines) + "\n"
    from pipeline.safety.pads import find_pads

    t = time.perf_counter()
    padded = sum(bool(find_pads(cv2.imread(str(p)))) for p in images)
    ms = 1000 * (time.perf_counter() - t) / len(images)
    table += f"\nMirror-padded borders found on {padded} of {len(images)} photos, {ms:.1f} ms per photo.\n"
    print(table)
    if a.split != "val":
        return
    res = ROOT / "benchmarks" / "results"
    (res / "safety_photos.json").write_text(json.dumps(rows, indent=1))
    (res / "safety_photos.md").write_text(table)


if __name__ == "__main__":
    main()

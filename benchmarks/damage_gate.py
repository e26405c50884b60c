"""The damage segmenter's "nothing here" gate: how many intact frames it stops, and how many damaged inputs
it lets through, trained on the params' recipe against the recipe before it, in the same run.

    python benchmarks/damage_gate.py                                   # root params, data/weights/damage.pt
    python benchmarks/damage_gate.py --params data/quick/params.yaml   # the quick rebuild's
    python benchmarks/damage_gate.py --target data/weights/damage_closeup.pt

Both gates are trained on the same segmenter with `pipeline.train.gate` and the params' `train_damage_gate`
section; the baseline swaps `intact_passes` (short passes over many intact facades) for the three 12 s intact
passes (seeds 104, 105, 107; 106 held out) it had before. Each gate keeps its own calibrated threshold and is
scored on inputs neither saw:
- intact: 2 s passes over 20 unseen intact facades (seeds 500-519), the share stopped;
- damaged: the synthetic test views and a half-intact 8 s pass (seed 108), the share let through;
- the real UAV75 val crack photos (when ../shared/data/real is present), the share let through.
Writes benchmarks/results/damage_gate{_SUFFIX}.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adaptive.gate import load_gate  # noqa: E402
from pipeline.models import checkpoint  # noqa: E402
from pipeline.sinks import atomic_json  # noqa: E402
from pipeline.train import gate as G  # noqa: E402
from pipeline.train.common import load_params  # noqa: E402
from pipeline.train.seg_data import real_crack_pairs, synthetic_pairs  # noqa: E402

SECTION = "train_damage_gate"
UNSEEN_SEED = 500  # the scored intact facades: seeds 500-519, which no training recipe here draws
OLD_INTACT = [{"seconds": 12, "fps": 10, "seed": s, "intact": 1.0, "every": 1} for s in (104, 105, 107)] + \
             [{"seconds": 12, "fps": 10, "seed": 106, "intact": 1.0, "every": 1, "val": True}]


def train(section: dict, out: Path) -> Path:
    with tempfile.TemporaryDirectory() as d:
        params = Path(d) / "params.yaml"
        params.write_text(yaml.safe_dump({SECTION: section | {"out": str(out)}}))
        G.main(str(params), SECTION)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--target", help="segmenter weights (default: the section's target)")
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "data" / "real"))
    ap.add_argument("--suffix", default="", help="results file suffix, e.g. _quick")
    a = ap.parse_args()
    sec = load_params(a.params, SECTION)
    sec["target"] = a.target or sec["target"]
    ip = sec.get("intact_passes")
    if not ip:
        sys.exit(f"{a.params}: `{SECTION}` has no `intact_passes`: nothing to compare against the baseline")
    if ip["seed"] + ip["train"] + ip["val"] > UNSEEN_SEED:
        sys.exit(f"{a.params}: `intact_passes` reach seed {UNSEEN_SEED}, where this benchmark's unseen facades start")
    old = {k: v for k, v in sec.items() if k != "intact_passes"} | {"clips": [c for c in sec["clips"] if c["intact"] < 1] + OLD_INTACT}
    with tempfile.TemporaryDirectory() as d:
        gates = {"three long intact passes (before)": train(old, Path(d) / "old.pt"),
                 f"{sec['intact_passes']['train']} short intact passes (params)": train(sec, Path(d) / "new.pt")}
        loaded = {k: load_gate(p, sec["target"], None, "this benchmark") for k, p in gates.items()}
        cal = {k: checkpoint.read_task(p, G.TASK, "gate", "", "")["calibration"] for k, p in gates.items()}

    seg, meta = checkpoint.load(sec["target"], "damage_segmentation")
    seg.eval()
    scale = float(meta.get("meta", {}).get("input_scale", 0.5))
    sets = {"unseen intact facades": G.intact_passes({"train": 0, "val": 20, "seconds": 2, "fps": 3, "seed": UNSEEN_SEED}, scale)[1],
            "synthetic test views": G.pairs_from(synthetic_pairs(Path(sec["data"]), "test", "damage"), scale),
            "half-intact pass, seed 108": G.clip_frames(8, 108, 0.5, 1, scale, 10)}
    if Path(a.real).exists():
        sets["UAV75 val photos"] = G.pairs_from(real_crack_pairs(Path(a.real), sec.get("holdout", {}))["uav75_val"], 1.0)
    encoded = {k: G.encode(seg, sec["block"], v, k, sec.get("min_px", 1)) for k, v in sets.items()}

    results = {}
    for name, (gate, _, thr) in loaded.items():
        r = {"threshold": round(thr, 4), "own val: clean stopped": cal[name]["skipped_clean"], "own val: clean images": cal[name]["n_clean"]}
        for k, items in encoded.items():
            top = G.top_cells(gate, items)
            # an image with too little damage to count either way (None) is in neither
            clean, damaged = (np.array([h is want for _, _, h in items]) for want in (False, True))
            if clean.any():
                r[f"{k}: stopped"] = round(float((top[clean] < thr).mean()), 4)
            if damaged.any():
                r[f"{k}: damaged let through"] = round(float((top[damaged] >= thr).mean()), 4)
        results[name] = r
    base = next(iter(results))
    cols = [c for c in results[base] if c != "threshold" and c != "own val: clean images"]
    lines = [f"Damage gate on `{sec['target']}`, `{SECTION}` of `{Path(a.params).resolve().relative_to(ROOT) if Path(a.params).resolve().is_relative_to(ROOT) else a.params}`",
             "", "| recipe | threshold | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, r in results.items():
        cells = []
        for c in cols:
            v, b = r.get(c), results[base].get(c)
            cells.append("-" if v is None else f"{v:.3f}" + (f" ({v / b:.2f}x)" if name != base and b else ""))
        lines.append(f"| {name} | {r['threshold']:.3f} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    out = ROOT / "benchmarks" / "results" / f"damage_gate{a.suffix}"
    atomic_json(f"{out}.json", {"target": str(sec["target"]), "params": str(a.params), "results": results})
    Path(f"{out}.md").write_text(f"# `python benchmarks/damage_gate.py`\n\n{table}\n\nRatios against '{base}', trained in the same run. "
                                 f"Own val: the images each gate's threshold was set on "
                                 f"({' and '.join(str(r['own val: clean images']) for r in results.values())} clean ones).\n")


if __name__ == "__main__":
    main()

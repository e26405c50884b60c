"""Hard-hat accuracy of the shipped site-safety model and rule.

    python benchmarks/safety_accuracy.py [--config stages/configs/safety_detector.yaml] [--imgsz N] [--iou X] [--no-gate]
                                         [--weights PATH] [--hat-conf X ...]

Detection runs through the detector stage the config builds (its weights, input size and 'nothing here'
gate), with tracking off: the images are unrelated.

1. Real: the `val` split of ../shared/data/real/hardhat_workers (skipped when absent). GT `helmet`
   boxes are wearer heads, `head` boxes non-wearer heads; each predicted head point is matched to
   the GT box that holds it (pipeline/safety/metrics.py). Reported per head source (pose, head_box,
   both) so the sources are compared in the same run.
2. Synthetic: the generator's `test` split, the same metrics, plus how the rule handles each of
   the four hat situations, against the paper's base rule (containment only) as the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.safety.core import Detections, call_score  # noqa: E402
from pipeline.safety.metrics import STATUS_CLS, evaluate, real_gt, synth_gt  # noqa: E402
from pipeline.safety.rule import RuleConfig, decide  # noqa: E402
from stages import STAGES, parse_stage  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"


def detect_all(stage, images: list[Path]) -> dict[str, Detections]:
    g = stage.backend.gate
    before = 0 if g is None else g.n_gated
    out = {}
    for i in range(0, len(images), 8):
        batch = images[i : i + 8]
        for p, d in zip(batch, stage.backend([cv2.imread(str(x)) for x in batch], False)):
            out[p.name] = d
    if g is not None:
        print(f"  the gate stopped {g.n_gated - before} of {len(images)} images after layer {g.layer}")
    return out


def predictions(dets: dict[str, Detections], rule: RuleConfig) -> tuple[list[dict], dict]:
    preds, decisions = [], {}
    for name, d in dets.items():
        decisions[name] = decide(d, rule)
        for x in decisions[name]:
            preds.append({"image": name, "point": x.head.point, "score": call_score(x.to_json()), "det": x.head.score,
                          "cls": STATUS_CLS[x.status]})
    return preds, decisions


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-9)


def situations(metas: list[dict], decisions: dict) -> dict:
    """Per GT hat: a worn hat must make its wearer `worn`; a held/ground/table hat must make nobody `worn`."""
    ok = {s: [0, 0] for s in ("worn", "held", "ground", "table")}
    for m in metas:
        decs = decisions[m["image"]]
        for hat in m["hats"]:
            s = hat["situation"]
            used = [d for d in decs if d.status == "worn" and d.hat_box is not None and iou(d.hat_box, hat["box"]) > 0.3]
            if s == "worn":
                # the wearer: the GT person whose head point this hat holds
                owner = next((p for p in m["persons"] if p["wears"] and hat["box"][0] <= p["head"][0] <= hat["box"][2]
                              and hat["box"][1] <= p["head"][1] <= hat["box"][3]), None)
                if owner is None:
                    continue
                good = any(np.hypot(d.head.point[0] - owner["head"][0], d.head.point[1] - owner["head"][1])
                           < 0.5 * (hat["box"][2] - hat["box"][0]) for d in used)
            else:
                good = not used
            ok[s][0] += int(good)
            ok[s][1] += 1
    return {s: {"accuracy": a / n if n else float("nan"), "hats": n} for s, (a, n) in ok.items()}


def fmt(m: dict) -> str:
    w, n = m["wearer"], m["non_wearer"]
    return (f"wearer AP {100 * w['AP']:5.1f} P {w['precision']:.3f} R {w['recall']:.3f} | non-wearer AP {100 * n['AP']:5.1f} "
            f"P {n['precision']:.3f} R {n['recall']:.3f} | head miss rate {m['head_miss_rate']:.3f}")


def at_operating_point(preds, gts, conf):
    m = evaluate([p for p in preds if p["det"] >= conf], gts)
    full = evaluate(preds, gts)  # AP over the whole score range, P/R at the shipped threshold
    for c in ("wearer", "non_wearer"):
        m[c]["AP"] = full[c]["AP"]
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, default=ROOT / "stages" / "configs" / "safety_detector.yaml")
    ap.add_argument("--weights", type=Path, help="instead of the config's model (the gate, made for that model, goes off)")
    ap.add_argument("--imgsz", type=int, help="instead of the config's input size")
    ap.add_argument("--iou", type=float, help="instead of the config's NMS IoU")
    ap.add_argument("--no-gate", action="store_true", help="run every image to the end (the config's gate off)")
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "real" / "hardhat_workers")
    ap.add_argument("--synth", type=Path, default=ROOT / "data" / "sites")
    ap.add_argument("--hat-conf", type=float, nargs="*", default=[],
                    help="also score the rule with these hat thresholds (the shipped one is hardhat_rule.yaml's)")
    ap.add_argument("--conf", type=float, default=0.25, help="detection threshold for precision/recall (the detector's conf)")
    a = ap.parse_args()
    _, cfg = parse_stage(a.config)
    # a low stage threshold so AP sees the whole score range; P/R are taken at --conf below
    update = {"conf": 0.05, "tracker": None, **({"model": a.weights.resolve()} if a.weights else {}),
              **({"imgsz": a.imgsz} if a.imgsz else {}), **({"iou": a.iou} if a.iou else {}), **({"gate": None} if a.no_gate or a.weights else {})}
    stage = STAGES["safety_detector"](cfg.model_copy(update=update))
    g = stage.backend.gate
    print(f"{a.config.name}: {stage.cfg.model.name}, imgsz {stage.cfg.imgsz}, NMS IoU {stage.cfg.iou}, gate "
          + (f"on (threshold {g.threshold:.3f})" if g is not None else "off"))
    results = {}
    # the shipped rule, with detection thresholds opened up so AP sees the whole score range
    import yaml

    rule_yaml = {k: v for k, v in yaml.safe_load((ROOT / "stages/configs/hardhat_rule.yaml").read_text()).items()
                 if k != "type"}
    shipped = RuleConfig(**{**rule_yaml, "person_conf": 0.05, "head_conf": 0.05})
    hat_rules = [(f"hat_conf={hc}", shipped.model_copy(update={"hat_conf": hc})) for hc in a.hat_conf]
    if a.real.exists():
        images, gts = real_gt(a.real)
        print(f"real hardhat_workers/val: {len(images)} images, {sum(g['cls'] == 'wearer' for g in gts)} wearer and "
              f"{sum(g['cls'] == 'non_wearer' for g in gts)} non-wearer heads")
        dets = detect_all(stage, images)
        sources = [(src, shipped.model_copy(update={"head_source": src})) for src in ("pose", "head_box", "both")]
        for name, rule in sources + hat_rules:
            preds, _ = predictions(dets, rule)
            results[f"real/{name}"] = m = at_operating_point(preds, gts, a.conf)
            print(f"  {name:12s} {fmt(m)}")
    else:
        print(f"real data not found at {a.real}: skipped")
    if (a.synth / "meta" / "test.jsonl").exists():
        images, gts, metas = synth_gt(a.synth)
        print(f"synthetic test: {len(images)} images, {len(gts)} heads")
        dets = detect_all(stage, images)
        rules = [("ours", shipped), ("base rule", shipped.model_copy(update={"extra_checks": False}))] + hat_rules
        for name, rule in rules:
            preds, decisions = predictions(dets, rule)
            results[f"synthetic/{name}"] = m = at_operating_point(preds, gts, a.conf)
            m["situations"] = situations(metas, decisions)
            print(f"  {name:12s} {fmt(m)}")
            print("               situations: " + ", ".join(f"{s} {v['accuracy']:.3f} (n={v['hats']})"
                                                           for s, v in m["situations"].items()))
        o, b = results["synthetic/ours"]["situations"], results["synthetic/base rule"]["situations"]
        print("  ours / base rule, per situation: " + ", ".join(
            f"{s} {o[s]['accuracy'] / max(b[s]['accuracy'], 1e-9):.2f}x" for s in o))
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "safety_accuracy.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

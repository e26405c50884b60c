"""The photo chain (detector config, photo rule, hat check) scored by grouped cross-validation on the 400
real Hard Hat Workers train photos: where photo settings are chosen, since val has only 36 bare heads.

    python benchmarks/safety_photos_cv.py [--detectors A.yaml B.yaml ...] [--folds 5]
    python benchmarks/safety_photos_cv.py --tta-sizes 640 640,768   # the shipped config with other extra pass sizes

The check is trained on the train photos, so scoring it there needs care: the photos are split into folds
(by photo), each fold's check is fitted on the other folds' worn calls (the classifier and settings of
`dvc repro train_hat_check`) and decides on its own fold's photos, and AP is taken over all of them.
The first detector config is the baseline of the ratio column; by default the shipped photo config with
its test-time passes (`tta:`) off, then as shipped. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.safety.hat_check import HatCheck  # noqa: E402
from pipeline.safety.head_check import HeadCheck  # noqa: E402
from pipeline.train.head_check import examples as head_examples  # noqa: E402
from benchmarks._common import stage_config_copy  # noqa: E402
from pipeline.safety.metrics import evaluate, prediction, real_gt  # noqa: E402
from pipeline.safety.rule import decide  # noqa: E402
from pipeline.safety.second_looks import second_looks  # noqa: E402
from pipeline.train.hat_check import classifier, heads_by_image, rule_of, worn_examples  # noqa: E402

CONFIGS = ROOT / "stages" / "configs"


def cross_validated(detector: Path, rule_cfg: Path, images: list[Path], gts: list[dict], folds: int, p: dict,
                    min_scores: list[float], head_thresholds: list[float]) -> dict:
    from sklearn.model_selection import GroupKFold

    from stages import load_stage
    from stages.safety import RuleStageConfig

    det, rule_yaml = load_stage(detector), yaml.safe_load(rule_cfg.read_text())
    rule, heads = rule_of(rule_cfg), heads_by_image(gts)
    names = np.array([q.name for q in images])
    fold = np.zeros(len(images), int)
    for k, (_, held) in enumerate(GroupKFold(folds).split(names, groups=names)):
        fold[held] = k
    t = time.perf_counter()
    per, ex = [], []  # (image, decisions) per photo; (fold, features, wears) per worn call on a labelled head
    for i, q in enumerate(tqdm(images, desc=detector.name, unit="img", file=sys.stderr)):
        im = cv2.imread(str(q))
        decisions = decide(det.backend([im], False)[0], rule)
        per.append((im, decisions))
        ex += [(fold[i], f, w) for f, w in worn_examples(im, decisions, heads.get(q.name, []))]
    seconds = time.perf_counter() - t
    fk, X, y = np.array([e[0] for e in ex]), np.array([e[1] for e in ex]), np.array([e[2] for e in ex], bool)
    threshold = rule_yaml.get("hat_check_threshold", RuleStageConfig.model_fields["hat_check_threshold"].default)
    checks = [HatCheck.fitted(classifier(p).fit(X[fk != k], y[fk != k]), threshold) for k in range(folds)]
    rows = {}
    variants = [("no hat check", False, None, 0.0), ("hat check", True, None, 0.0)]
    variants += [(f"hat check, no_hat_min_score {t:g}", True, None, t) for t in min_scores if t > 0]
    variants += [(f"hat check, head check {h:g}, no_hat_min_score {t:g}", True, h, t) for h in head_thresholds for t in min_scores]
    head_X, head_y, head_g = head_examples(images, gts)
    head_fold = {n: fold[i] for i, n in enumerate(names)}
    hk = np.array([head_fold[n] for n in head_g])
    head_models = [classifier(p).fit(head_X[hk != k], head_y[hk != k]) for k in range(folds)]
    for label, check, head_threshold, min_score in variants:
        preds = []
        heads_at = [None] * folds if head_threshold is None else [HeadCheck.fitted(m, head_threshold) for m in head_models]
        for i, (im, decisions) in enumerate(per):
            decisions, _ = second_looks(decisions, im, checks[fold[i]] if check else None, heads_at[fold[i]],
                                        bool(rule_yaml.get("mirrored_borders")), min_score)
            preds += [prediction(names[i], d.to_json()) for d in decisions]
        rows[label] = evaluate(preds, gts) | {"ms": 1000 * seconds / len(images), "bare_worn": int((~y).sum())}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", type=Path, nargs="+", default=None)
    ap.add_argument("--tta-sizes", nargs="+", default=[], metavar="SIZE[,SIZE...]",
                    help="extra detectors: the shipped photo config with its test-time passes at these input sizes "
                    "(after the detectors above; `tta.sizes`, comma-separated)")
    ap.add_argument("--rule", type=Path, default=CONFIGS / "hardhat_rule_photos.yaml")
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "real" / "hardhat_workers")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--min-scores", type=float, nargs="*", default=[0.25, 0.3, 0.35, 0.4, 0.45, 0.5],
                    help="extra rows with the hat check and this no_hat_min_score (the rule YAML's own is not read)")
    ap.add_argument("--head-checks", type=float, nargs="*", default=[0.7, 0.8, 0.9],
                    help="extra rows with the head check at this threshold (fitted per fold on the other folds' "
                    "labelled heads), then each no_hat_min_score")
    a = ap.parse_args()
    try:
        tta_sizes = [[int(n) for n in arg.split(",")] for arg in a.tta_sizes]
    except ValueError:
        sys.exit(f"--tta-sizes wants input sizes in pixels separated by commas (640,768), got {a.tta_sizes}")
    if not a.real.exists():
        print(f"skipped: {a.real} not found")
        return
    images, gts = real_gt(a.real, "train")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())["train_hat_check"]
    with tempfile.TemporaryDirectory() as tmp:
        shipped = CONFIGS / "safety_photos.yaml"
        detectors = a.detectors or [stage_config_copy(shipped, Path(tmp) / "safety_photos_one_pass.yaml", tta=None), shipped]
        tta = yaml.safe_load(shipped.read_text())["tta"]
        for sizes in tta_sizes:
            name = "safety_photos_sizes_" + "-".join(map(str, sizes)) + ".yaml"
            detectors.append(stage_config_copy(shipped, Path(tmp) / name, tta={**tta, "sizes": sizes}))
        results = {d.name: cross_validated(d, a.rule, images, gts, a.folds, p, a.min_scores, a.head_checks) for d in detectors}
    base = results[detectors[0].name]["hat check"]
    lines = [f"Hard Hat Workers train, {len(images)} photos, grouped {a.folds}-fold cross-validation of the hat check, "
             f"rule {a.rule.name}", "",
             "| detector config | hat check | wearer AP | non-wearer AP | P | R | heads missed | wearer / non-wearer AP vs first "
             "| worn calls on bare heads | wearer F1 | non-wearer F1 | ms / photo (read, detect, rule) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        for label, m in rows.items():
            w, n = m["wearer"], m["non_wearer"]
            lines.append(f"| {name} | {label} | {100 * w['AP']:.1f} | {100 * n['AP']:.1f} | {n['precision']:.3f} | "
                         f"{n['recall']:.3f} | {m['head_miss_rate']:.1%} | {w['AP'] / base['wearer']['AP']:.2f}x / "
                         f"{n['AP'] / base['non_wearer']['AP']:.2f}x | {m['bare_worn']} | {w['F1']:.3f} | {n['F1']:.3f} | {m['ms']:.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The hat check beside the shipped site detector (DVC `train_hat_check`).

    python -m pipeline.train.hat_check params.yaml train_hat_check

The detector config and the rule (with the check off) run on the real Hard Hat Workers train split,
or, where that is absent, on the synthetic sites' train split. Each `worn` call whose head point lies in a
labelled head box is one example: a hard hat if that head is labelled as wearing one, hair (or anything
else) if it is bare. The classifier's grouped 5-fold AUROC, against the detector's hat score alone, is
stored with it and printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import load_yaml
from pipeline.safety.hat_check import FEATURES, fingerprint, save, worn_features
from pipeline.safety.metrics import real_gt, synth_gt
from pipeline.safety.rule import RuleConfig, decide
from pipeline.train.common import load_params


def heads_by_image(gts: list[dict]) -> dict[str, list]:
    """Labelled heads ({image, box, cls}) as image name -> [(box, wears a hat)]."""
    heads: dict[str, list] = {}
    for g in gts:
        heads.setdefault(g["image"], []).append((g["box"], g["cls"] == "wearer"))
    return heads


def worn_examples(image: np.ndarray, decisions, heads: list) -> list[tuple[np.ndarray, bool]]:
    """(features, wears a hat) of each `worn` call whose head point lies in a labelled head box."""
    out = []
    for d in decisions:
        if d.status != "worn":
            continue
        x, yy = d.head.point
        wears = next((wr for b, wr in heads if b[0] <= x <= b[2] and b[1] <= yy <= b[3]), None)
        f = worn_features(image, d)
        if wears is not None and f is not None:
            out.append((f, wears))
    return out


def rule_of(rule_cfg: Path) -> RuleConfig:
    """The rule's thresholds from a rule stage YAML (its check and border handling left out)."""
    return RuleConfig(**{k: v for k, v in load_yaml(rule_cfg).items() if k in RuleConfig.model_fields})


def classifier(p: dict):
    """The check's classifier, unfitted, from the train_hat_check params."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_depth=p["max_depth"], max_iter=p["max_iter"], random_state=p["seed"])


def labelled_photos(p: dict) -> tuple[list[Path], list[dict], str]:
    """The photos and labelled heads a check learns from: the real Hard Hat Workers split under `real`, or, where
    that is absent, the synthetic sites' split under `data`; and which of them, in words."""
    root = Path(p["real"]) / "hardhat_workers" if p.get("real") else None
    if root is not None and root.exists():
        return *real_gt(root, p["split"]), f"real {p['split']} photos"
    print(f"real hard-hat photos not found at {root}; training on synthetic sites ({p['data']}) only")
    images, gts, _ = synth_gt(Path(p["data"]), p["split"])
    return images, gts, f"synthetic {p['split']} sites"


def examples(detector_cfg: Path, rule_cfg: Path, images: list[Path], gts: list[dict], what: str):
    """Features, labels and image names of the rule's `worn` calls on labelled heads ({image, box, cls})."""
    from stages import load_stage

    det, rule, heads = load_stage(detector_cfg), rule_of(rule_cfg), heads_by_image(gts)
    X, y, groups = [], [], []
    for p in tqdm(images, desc=f"hat check: {what}", unit="img"):
        im = cv2.imread(str(p))
        for f, wears in worn_examples(im, decide(det.backend([im], False)[0], rule), heads.get(p.name, [])):
            X.append(f)
            y.append(wears)
            groups.append(p.name)
    return np.array(X), np.array(y, bool), np.array(groups), det


def main(params_path: str, section: str) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    p = load_params(params_path, section)
    images, gts, what = labelled_photos(p)
    X, y, groups, det = examples(Path(p["detector"]), Path(p["rule"]), images, gts, what)
    if len(y) < 10 or y.all() or not y.any():
        sys.exit(f"the rule made {len(y)} worn calls on labelled heads in the {what}, {int((~y).sum())} of them on bare "
                 f"heads: too few to learn from (fix: train the detector first, `dvc repro polish_safety`)")

    folds = max(2, min(5, len(set(groups)), int((~y).sum()), int(y.sum())))
    cv = cross_val_predict(classifier(p), X, y, groups=groups, cv=GroupKFold(folds), method="predict_proba")[:, 1]
    info = {"trained_on": what, "examples": int(len(y)), "cv_folds": folds, "bare": int((~y).sum()), "cv_auroc": round(float(roc_auc_score(y, cv)), 4),
            "cv_auroc_hat_score_alone": round(float(roc_auc_score(y, X[:, FEATURES.index("hat_score")])), 4),
            "cv_vetoed_at": {str(t): [int(((cv < t) & ~y).sum()), int(((cv < t) & y).sum())] for t in (0.2, 0.3, 0.4)}}
    model = classifier(p).fit(X, y)
    save(p["out"], model, fingerprint(det), info)
    print(f"hat check on the {what}: {info['examples']} worn calls ({info['bare']} on bare heads); grouped {folds}-fold AUROC "
          f"{info['cv_auroc']} (detector hat score alone {info['cv_auroc_hat_score_alone']}); vetoed [bare, hatted] "
          f"at each threshold: {info['cv_vetoed_at']} -> {p['out']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""The head check (DVC `train_head_check`): worn against bare, from the labelled head boxes.

    python -m pipeline.train.head_check params.yaml train_head_check

Every labelled head of the real Hard Hat Workers train split is one example (or, where that is absent, of
the synthetic sites' train split). Its grouped 5-fold AUROC, and how many bare and hatted heads each
threshold would take back, are stored with it and printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from pipeline.safety.colour import head_colour
from pipeline.safety.hat_check import save
from pipeline.safety.head_check import FEATURES, TASK
from pipeline.train.common import load_params
from pipeline.train.hat_check import classifier, labelled_photos


def examples(images: list[Path], gts: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, wears-a-hat labels and image names of the labelled heads ({image, box, cls})."""
    ims = {p.name: cv2.imread(str(p)) for p in images}
    X, y, groups = [], [], []
    for g in gts:
        f = head_colour(ims[g["image"]], g["box"])
        if f is not None:
            X.append(f)
            y.append(g["cls"] == "wearer")
            groups.append(g["image"])
    return np.array(X), np.array(y, bool), np.array(groups)


def main(params_path: str, section: str) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    p = load_params(params_path, section)
    images, gts, what = labelled_photos(p)
    X, y, groups = examples(images, gts)
    if len(y) < 10 or y.all() or not y.any():
        sys.exit(f"{len(y)} labelled heads in the {what}, {int((~y).sum())} of them bare: too few to learn from "
                 f"(fix: point `real:` at ../shared/data/real, or generate sites first, `dvc repro generate_sites`)")
    folds = max(2, min(5, len(set(groups)), int((~y).sum()), int(y.sum())))
    cv = cross_val_predict(classifier(p), X, y, groups=groups, cv=GroupKFold(folds), method="predict_proba")[:, 1]
    info = {"trained_on": what, "heads": int(len(y)), "bare": int((~y).sum()), "cv_folds": folds,
            "cv_auroc": round(float(roc_auc_score(y, cv)), 4),
            "cv_taken_back_at": {str(t): [int(((cv >= t) & ~y).sum()), int(((cv >= t) & y).sum())] for t in (0.7, 0.8, 0.9)}}
    save(p["out"], classifier(p).fit(X, y), {}, info, TASK, FEATURES)
    print(f"head check on the {what}: {info['heads']} labelled heads ({info['bare']} bare); grouped {folds}-fold AUROC "
          f"{info['cv_auroc']}; [bare, hatted] heads scored at or above each threshold: {info['cv_taken_back_at']} -> {p['out']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

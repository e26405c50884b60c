"""Evaluate the shipped stages: synthetic test split, and the real crack sets when present.

    python -m pipeline.evaluate params.yaml   -> data/metrics.json, data/plots/*.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, f1_score  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pipeline.config import load_yaml  # noqa: E402
from pipeline.core import COMPONENT_CLASSES, DAMAGE_CLASSES, DAMAGE_STATES  # noqa: E402
from pipeline.metrics import confusion, iou_per_class, prf, tolerant_f1  # noqa: E402
from pipeline.sinks import atomic_json  # noqa: E402
from pipeline.train.common import load_params, setup  # noqa: E402
from pipeline.train.condition import CropDataset, predict, read_crops  # noqa: E402
from pipeline.train.seg_data import EVAL_SETS, read_pair, real_crack_pairs, synthetic_pairs  # noqa: E402
from stages import load_stage  # noqa: E402

def seg_scores(stage, pairs, names, desc) -> dict:
    n = len(names)
    cm = np.zeros((n, n), np.int64)
    for img_path, mask_path, fn in tqdm(pairs, desc=desc):
        img, gt = read_pair(img_path, mask_path, fn)
        cm += confusion(stage.predict([img])[0], gt, n)
    iou = iou_per_class(cm)
    return {"iou": {k: None if np.isnan(v) else round(float(v), 4) for k, v in zip(names, iou)},
            "miou_fg": round(float(np.nanmean(iou[1:])), 4)}


def crack_scores(stage, pairs, desc) -> dict:
    cm = np.zeros((2, 2), np.int64)
    counts = []
    for img_path, mask_path, fn in tqdm(pairs, desc=desc):
        img, gt = read_pair(img_path, mask_path, fn)
        pred = (stage.predict([img])[0] == 1).astype(np.uint8)
        cm += confusion(pred, gt, 2)
        counts.append(tolerant_f1(pred, gt, tol=2))
    return {"images": len(pairs), "crack_iou": round(float(iou_per_class(cm)[1]), 4),
            **{f"{k}_tol2": round(v, 4) for k, v in prf(counts).items()}}


CLOSEUP = Path(__file__).resolve().parent.parent / "stages" / "configs" / "damage_closeup.yaml"


def real_crack_scores(weights: Path | None, real: Path, holdout: dict, label: str = "", **overrides) -> dict:
    """Crack IoU and F1@2px on each held-out real crack set, run as the shipped close-up config runs
    photos (full resolution, tiles, flips), not at the drone-frame scale. `weights` replaces the
    config's checkpoint (None keeps it); `overrides` replace its other keys (e.g. tta=[])."""
    spec = load_yaml(CLOSEUP)
    model = Path(weights).resolve() if weights is not None else (CLOSEUP.parent / spec["model"]).resolve()
    stage = load_stage({**spec, "model": str(model), **overrides})
    sets = real_crack_pairs(real, holdout)
    return {k: crack_scores(stage, sets[k], f"{label}{k}") for k in EVAL_SETS}


def evaluate(p: dict) -> dict:
    setup(0)
    weights = Path(p.get("weights", "data/weights"))
    root, plots = Path(p["data"]), Path(p["plots"])
    plots.mkdir(parents=True, exist_ok=True)
    metrics = {}
    comp = load_stage({"type": "component_segmentation", "model": str(weights / "components.pt")})
    metrics["components"] = seg_scores(comp, synthetic_pairs(root, "test", "components"), COMPONENT_CLASSES, "components/test")
    dmg = load_stage({"type": "damage_segmentation", "model": str(weights / "damage.pt")})
    metrics["damage"] = seg_scores(dmg, synthetic_pairs(root, "test", "damage"), DAMAGE_CLASSES, "damage/test")

    cond = load_stage({"type": "component_condition", "model": str(weights / "condition.pt")})
    y, pred = predict(cond.model, DataLoader(CropDataset(read_crops(root, "test"), False), batch_size=256), torch.device("cpu"))
    metrics["condition"] = {"accuracy": round(float((y == pred).mean()), 4),
                            "macro_f1": round(float(f1_score(y, pred, average="macro")), 4), "crops": int(len(y))}
    ConfusionMatrixDisplay(confusion_matrix(y, pred, labels=range(4)), display_labels=DAMAGE_STATES).plot(cmap="Blues")
    plt.title("Condition (synthetic test crops)")
    plt.savefig(plots / "condition_confusion.png", dpi=80, bbox_inches="tight")
    plt.close()

    real = Path(p["real"])
    if real.exists():
        metrics["real_cracks"] = real_crack_scores(weights / p.get("closeup", "damage_closeup.pt"), real, p.get("holdout", {}))
    else:
        metrics["real_cracks"] = f"skipped: {real} not found"

    fig, ax = plt.subplots(1, 2, figsize=(10, 3))
    for a, key in zip(ax, ("components", "damage")):
        iou = metrics[key]["iou"]
        a.bar(list(iou)[1:], [v or 0 for v in list(iou.values())[1:]])
        a.set_ylim(0, 1)
        a.set_title(f"{key} IoU (synthetic test)")
        a.tick_params(axis="x", rotation=45)
    fig.savefig(plots / "iou.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    atomic_json(p["out"], metrics)
    return metrics


if __name__ == "__main__":
    import json

    print(json.dumps(evaluate(load_params(sys.argv[1], "evaluate")), indent=2))

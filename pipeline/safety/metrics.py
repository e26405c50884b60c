"""Wearer / non-wearer metrics on head boxes, matched by head point, as in the head-keypoint paper.

A predicted worker (head point, status, score) is a true positive when its point lies inside a
not-yet-matched ground-truth head box of the same class (wearer = head with a hard hat, non-wearer
= bare head). AP is COCO-style: 101-point interpolated precision over recall, predictions taken in
score order.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.safety.core import call_score

CLASSES = ("wearer", "non_wearer")
STATUS_CLS = {"worn": "wearer", "no_hat": "non_wearer", "unknown": "unknown"}


def prediction(image: str, d: dict) -> dict:
    """One decision (`Decision.to_json()`) on the named image, as `evaluate` takes it."""
    return {"image": image, "point": d["head"], "score": call_score(d), "det": d["score"], "cls": STATUS_CLS[d["status"]]}


def from_predictions(path: Path) -> list[dict]:
    """The hard-hat decisions `inspectflow predict` wrote to predictions.jsonl, as `evaluate` takes them
    (images keyed by file name)."""
    preds = []
    for line in Path(path).read_text().splitlines():
        x = json.loads(line)
        name = x["image"].replace("\\", "/").rsplit("/", 1)[-1]
        preds += [prediction(name, d) for d in x.get("decisions", [])]
    return preds


def _inside(pt, boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 0] <= pt[0]) & (pt[0] <= boxes[:, 2]) & (boxes[:, 1] <= pt[1]) & (pt[1] <= boxes[:, 3])


def match(preds: list[dict], gts: list[dict]) -> tuple[np.ndarray, np.ndarray, int]:
    """preds: {image, point, score}; gts: {image, box}, one class. Returns scores, TP flags (score order), #GT."""
    order = sorted(range(len(preds)), key=lambda i: -preds[i]["score"])
    by_img: dict = {}
    for g in gts:
        by_img.setdefault(g["image"], []).append(g["box"])
    boxes = {k: np.array(v, float).reshape(-1, 4) for k, v in by_img.items()}
    used = {k: np.zeros(len(v), bool) for k, v in boxes.items()}
    tp = np.zeros(len(order), bool)
    for n, i in enumerate(order):
        p = preds[i]
        b = boxes.get(p["image"])
        if b is None:
            continue
        cand = np.flatnonzero(_inside(p["point"], b) & ~used[p["image"]])
        if len(cand):
            # the box whose centre is nearest the point, when boxes overlap
            c = (b[cand, :2] + b[cand, 2:]) / 2
            j = cand[np.argmin(((c - np.asarray(p["point"])) ** 2).sum(1))]
            used[p["image"]][j], tp[n] = True, True
    return np.array([preds[i]["score"] for i in order]), tp, len(gts)


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
    r = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, r, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def evaluate(preds: list[dict], gts: list[dict]) -> dict:
    """preds: {image, point, score, cls in CLASSES or 'unknown'}; gts: {image, box, cls}."""
    out = {}
    for c in CLASSES:
        _, tp, n_gt = match([p for p in preds if p["cls"] == c], [g for g in gts if g["cls"] == c])
        prec, rec = float(tp.mean()) if len(tp) else 0.0, float(tp.sum() / n_gt) if n_gt else float("nan")
        out[c] = {"AP": average_precision(tp, n_gt), "precision": prec, "recall": rec,
                  "F1": 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0, "predicted": int(len(tp)), "gt": n_gt}
    # miss rate: ground-truth heads, of either class, that no predicted point (any status) falls in
    _, tp, n_gt = match([{**p, "score": 1.0} for p in preds], gts)
    out["head_miss_rate"] = float(1 - tp.sum() / n_gt) if n_gt else float("nan")
    out["unknown"] = sum(p["cls"] == "unknown" for p in preds)
    return out


def real_gt(root: Path, split: str = "val") -> tuple[list[Path], list[dict]]:
    """Images and labelled heads ({image, box, cls}) of a Hard Hat Workers split: YOLO classes 0 = helmet
    (a wearer's head), 2 = bare head; 1 (person) is left out."""
    images = sorted((root / "images" / split).glob("*.jpg"))
    gts = []
    for p in images:
        h, w = cv2.imread(str(p)).shape[:2]
        lab = root / "labels" / split / f"{p.stem}.txt"
        for line in lab.read_text().splitlines() if lab.exists() else []:
            c, cx, cy, bw, bh = line.split()[:5]
            if c not in ("0", "2"):
                continue
            cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
            gts.append({"image": p.name, "box": [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2],
                        "cls": "wearer" if c == "0" else "non_wearer"})
    return images, gts


def synth_gt(root: Path, split: str = "test") -> tuple[list[Path], list[dict], list[dict]]:
    """The same for a synthetic site split (`generate_sites`), with each image's metadata."""
    metas = [json.loads(x) for x in (root / "meta" / f"{split}.jsonl").read_text().splitlines() if x.strip()]
    images = [root / "images" / split / m["image"] for m in metas]
    gts = [{"image": m["image"], "box": h["box"], "cls": "wearer" if h["wears"] else "non_wearer"}
           for m in metas for h in m["heads"]]
    return images, gts, metas

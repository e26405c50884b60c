"""Test-time augmentation for the site detector on photos: extra passes (mirrored, other input sizes)
merged with the plain one.

A photo has one look, and the photo detector misses about a fifth of the heads in it. A head the plain
pass misses is often found in the mirrored image or at another scale, so heads and people are merged as
a union (class-wise NMS keeps the surest box of each cluster), scored down by the share of passes that
missed them ("boost"), so that a head only one pass saw ranks below those all passes agree on. Hats are
merged more strictly: a faint hat box that one pass alone saw would otherwise land on a bare head and make
it a wearer, so a hat's score is its passes' summed score over the number of passes ("agree", weighted
box fusion's averaging). Chosen by grouped cross-validation on the real train photos (README).
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from pipeline.safety.core import Detections


def mirrored(d: Detections, width: int) -> Detections:
    """Detections made on a left-right mirrored image, mapped back onto the image."""
    out = d[np.ones(len(d), bool)]  # a copy
    out.xyxy[:, 0], out.xyxy[:, 2] = width - d.xyxy[:, 2], width - d.xyxy[:, 0]
    out.keypoints[:, 0] = width - d.keypoints[:, 0]  # one head point: no left/right pair to swap
    return out


def concat(ds: list[Detections]) -> Detections:
    fields = ("xyxy", "confidence", "class_id", "keypoints", "keypoint_confidence", "tracker_id")
    return Detections(*(np.concatenate([getattr(d, f) for d in ds]) for f in fields), names=ds[0].names)


def overlapping(a: Detections, b: Detections, iou: float) -> np.ndarray:
    """(len(a), len(b)): the pairs of one class whose boxes overlap more than `iou`."""
    ov = torchvision.ops.box_iou(torch.as_tensor(a.xyxy, dtype=torch.float64), torch.as_tensor(b.xyxy, dtype=torch.float64))
    return (ov.numpy() > iou) & (a.class_id[:, None] == b.class_id[None, :])


def union(d: Detections, iou: float) -> Detections:
    """Class-wise NMS: the surest box of each overlapping cluster, with its own head point."""
    if not len(d):
        return d
    keep = torchvision.ops.batched_nms(torch.as_tensor(d.xyxy, dtype=torch.float64), torch.as_tensor(d.confidence),
                                       torch.as_tensor(d.class_id), iou).numpy()
    return d[np.sort(keep)]


def agreement(d: Detections, iou: float, passes: int) -> Detections:
    """Weighted box fusion: each cluster becomes its score-weighted mean box, scored by the summed score over
    the number of passes, so a box only some passes saw is scored down."""
    if not len(d):
        return d
    same, used, keep, boxes, scores = overlapping(d, d, iou), np.zeros(len(d), bool), [], [], []
    for i in np.argsort(-d.confidence, kind="stable"):
        if used[i]:
            continue
        members = ~used & same[i]
        used |= members
        w = d.confidence[members]
        keep.append(i)
        boxes.append((d.xyxy[members] * w[:, None]).sum(0) / w.sum())
        scores.append(w.sum() / max(passes, int(members.sum())))
    out = d[np.array(keep)]
    out.xyxy, out.confidence = np.array(boxes), np.array(scores)
    return out


def seen_by(d: Detections, kept: Detections, source: np.ndarray, iou: float, passes: int) -> np.ndarray:
    """For each kept box, the share of passes with a box of its class overlapping it."""
    return np.array([len(set(source[hit])) for hit in overlapping(kept, d, iou)]) / passes


def merge(passes: list[Detections], iou: float, hats: str = "agree", heads: str = "boost") -> Detections:
    """One frame's passes as one set of detections: people and heads merged by `heads`, hats by `hats`
    (agree: weighted box fusion; boost: union, scored down by the share of passes that missed the box;
    union: class-wise NMS)."""
    d = concat(passes)
    source = np.concatenate([np.full(len(p), i) for i, p in enumerate(passes)])
    is_hat = d.class_id == d.names.index("hardhat") if "hardhat" in d.names else np.zeros(len(d), bool)
    out = []
    for part, how in ((~is_hat, heads), (is_hat, hats)):
        if how == "agree":
            out.append(agreement(d[part], iou, len(passes)))
            continue
        kept = union(d[part], iou)
        if how == "boost":
            kept.confidence = kept.confidence * (0.5 + 0.5 * seen_by(d[part], kept, source[part], iou, len(passes)))
        out.append(kept)
    return concat(out)


def found_by_extra_passes(merged: Detections, plain: Detections, iou: float) -> int:
    """People and heads in the merged set that the plain pass had no box for (what the extra passes added)."""
    hat = merged.names.index("hardhat") if "hardhat" in merged.names else -1
    return int((~overlapping(merged[merged.class_id != hat], plain, iou).any(1)).sum())

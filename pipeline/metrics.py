"""Segmentation metrics: confusion-matrix IoU, and crack precision/recall/F1 with a pixel tolerance."""

from __future__ import annotations

import cv2
import numpy as np


def confusion(pred: np.ndarray, gt: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(gt.ravel().astype(np.int64) * n + pred.ravel(), minlength=n * n).reshape(n, n)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1) - tp
    return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)


def tolerant_f1(pred: np.ndarray, gt: np.ndarray, tol: int = 2) -> tuple[int, int, int, int]:
    """Counts for crack P/R/F1 where a predicted pixel within `tol` px of a true one counts as
    correct (and vice versa), as crack benchmarks do for 1-px-wide labels.
    Returns (tp_pred, n_pred, tp_gt, n_gt)."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
    p, g = pred.astype(np.uint8), gt.astype(np.uint8)
    return int((p & cv2.dilate(g, k)).sum()), int(p.sum()), int((g & cv2.dilate(p, k)).sum()), int(g.sum())


def prf(counts) -> dict:
    tp_p, n_p, tp_g, n_g = (sum(c[i] for c in counts) for i in range(4))
    p, r = tp_p / max(n_p, 1), tp_g / max(n_g, 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9)}

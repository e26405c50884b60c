"""Colour statistics of a box on a photo: what the hat and head checks read.

A hard hat is bright, smooth and often saturated; hair is dark and uneven; skin sits between. These few
numbers per box are enough for a small gradient-boosted classifier to tell them apart.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP = (24, 16)  # w, h: every box is read at this size (a hat box is wider than tall)
STATS = ("hue_cos", "hue_sin", "sat_mean", "val_mean", "sat_std", "val_std", "val_p75", "sat_p75", "dark_share")
HEAD = tuple(f"upper_{n}" for n in STATS) + tuple(f"head_{n}" for n in STATS) + ("width_share",)


def box_colour(image: np.ndarray, box) -> np.ndarray | None:
    """STATS of one box on a BGR image; None when the box holds no pixels."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = image[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
    if crop.size == 0:
        return None
    hsv = cv2.cvtColor(cv2.resize(crop, CROP), cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float64)
    hue = hsv[:, 0] * np.pi / 90  # OpenCV hue runs 0-180: an angle, so red at both ends stays one colour
    s, v = hsv[:, 1] / 255, hsv[:, 2] / 255
    return np.array([np.cos(hue).mean(), np.sin(hue).mean(), s.mean(), v.mean(), s.std(), v.std(),
                     np.percentile(v, 75), np.percentile(s, 75), (hsv[:, 2] < 60).mean()])


def head_colour(image: np.ndarray, box) -> np.ndarray | None:
    """HEAD of one head box: the colours of its upper half (where a hat sits) and of all of it, and its width
    as a share of the photo's; None when the box holds no pixels."""
    x0, y0, x1, y1 = box
    upper = box_colour(image, (x0, y0, x1, y0 + 0.5 * (y1 - y0)))
    whole = box_colour(image, box)
    if upper is None or whole is None:
        return None
    return np.concatenate([upper, whole, [(x1 - x0) / image.shape[1]]])

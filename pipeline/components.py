"""From a component mask to component instances, and from an instance to a fixed-size crop.

Training data and the running pipeline both go through these two functions, so the condition
classifier sees at run time exactly the kind of crop it was trained on.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import Component, DAMAGE_CLASSES


def extract_components(component_mask: np.ndarray, damage_mask: np.ndarray | None = None, min_area: int = 400,
                       classes=range(1, 8)) -> tuple[list[Component], list[np.ndarray]]:
    """Connected regions per class, with their damage pixel counts; also returns each region's
    boolean mask, cropped to its box."""
    comps, masks = [], []
    for cls in classes:
        n, labels, stats, _ = cv2.connectedComponentsWithStats((component_mask == cls).astype(np.uint8), connectivity=4)
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < min_area:
                continue
            region = labels[y : y + h, x : x + w] == k
            # the min-area rectangle depends only on the convex hull, which the outer contour holds: on
            # a wall of 10^5 px this is ~3x faster than passing every pixel, and the rectangle is the same
            contours, _ = cv2.findContours(region.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            pts = np.concatenate(contours) + np.int32([x, y])
            dmg = {}
            if damage_mask is not None:
                counts = np.bincount(damage_mask[y : y + h, x : x + w][region], minlength=len(DAMAGE_CLASSES))
                dmg = {DAMAGE_CLASSES[i]: int(counts[i]) for i in range(1, len(DAMAGE_CLASSES))}
            comps.append(Component(class_id=cls, box=(x, y, x + w, y + h), rect=cv2.minAreaRect(pts), area_px=area, damage_px=dmg))
            masks.append(region)
    return comps, masks


def crop_rect(image: np.ndarray, rect, size: int = 64) -> np.ndarray:
    """The min-area rectangle warped to size x size, long side horizontal (as in IC-SHM P2)."""
    box = cv2.boxPoints(rect).astype(np.float32)
    (w, h) = rect[1]
    # order corners so the long side maps to the crop's width
    if h > w:
        box = np.roll(box, 1, axis=0)
    dst = np.float32([[0, size - 1], [0, 0], [size - 1, 0], [size - 1, size - 1]])
    M = cv2.getPerspectiveTransform(box, dst)
    return cv2.warpPerspective(image, M, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)

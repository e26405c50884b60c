"""Linking views across frames: the same wall seen in 300 frames is one wall.

`Registrar` chains frame-to-frame homographies (ORB + RANSAC) so each frame maps into one
mosaic plane; `link` groups component views whose outlines overlap in that plane.
"""

from __future__ import annotations

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon


class Registrar:
    def __init__(self, width: int = 320):
        self.width = width
        self.orb = cv2.ORB_create(1000, fastThreshold=10)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self.prev = None  # (keypoints xy, descriptors, scale)
        self.H = np.eye(3)
        self.segment = 0

    def _features(self, image):
        s = self.width / image.shape[1]
        gray = cv2.cvtColor(cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        kp, des = self.orb.detectAndCompute(gray, None)
        return np.float32([k.pt for k in kp]) / s if kp else np.zeros((0, 2), np.float32), des

    def seed(self, image: np.ndarray, H: np.ndarray, segment: int) -> None:
        """Continue from a known frame (resuming a run, or a new chunk)."""
        self.prev, self.H, self.segment = self._features(image), np.asarray(H, float), segment

    def update(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """This frame's homography into the mosaic plane, and its segment (a new segment starts
        where registration fails, e.g. after a cut; views in different segments never link)."""
        pts, des = self._features(image)
        if self.prev is not None:
            H_rel = self._match(self.prev, (pts, des))
            if H_rel is None:
                self.segment += 1
                self.H = np.eye(3)
            else:
                self.H = self.H @ H_rel
        self.prev = (pts, des)
        return self.H.copy(), self.segment

    def _match(self, a, b) -> np.ndarray | None:
        (pa, da), (pb, db) = a, b
        if da is None or db is None or len(da) < 8 or len(db) < 8:
            return None
        m = self.matcher.match(db, da)
        if len(m) < 12:
            return None
        src = pb[[x.queryIdx for x in m]]
        dst = pa[[x.trainIdx for x in m]]
        H, inl = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        if H is None or inl.sum() < 10 or not 0.5 < np.linalg.det(H[:2, :2]) < 2.0:
            return None
        return H


def to_mosaic(rect, H: np.ndarray) -> list[list[float]]:
    """A min-area rectangle's 4 corners in the mosaic plane."""
    return to_mosaic_many([rect], H)[0]


def to_mosaic_many(rects: list, H: np.ndarray) -> list[list[list[float]]]:
    """Corners of each rectangle, with one perspectiveTransform call for the whole frame."""
    if not rects:
        return []
    pts = np.concatenate([cv2.boxPoints(r) for r in rects]).reshape(-1, 1, 2).astype(np.float64)
    return cv2.perspectiveTransform(pts, H).reshape(-1, 4, 2).round(1).tolist()


def _ious(polys: np.ndarray, others: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """IoU of the pairs (len(polys) x len(others)) that `candidates` allows and whose boxes overlap;
    0 elsewhere. shapely 2 computes the intersections in one vectorised call."""
    out = np.zeros(candidates.shape)
    if not candidates.any():
        return out
    a, b = shapely.bounds(polys), shapely.bounds(others)
    near = candidates & ((a[:, None, 0] <= b[None, :, 2]) & (b[None, :, 0] <= a[:, None, 2]) &
                         (a[:, None, 1] <= b[None, :, 3]) & (b[None, :, 1] <= a[:, None, 3]))
    i, j = np.nonzero(near)
    inter = shapely.area(shapely.intersection(polys[i], others[j]))
    union = shapely.area(polys[i]) + shapely.area(others[j]) - inter
    out[i, j] = inter / np.maximum(union, 1e-9)
    return out


def link(observations: list[dict], iou: float = 0.3, max_gap: int = 30) -> list[list[dict]]:
    """Group observations (dicts with frame, class_id, segment, poly) into physical components.
    A view joins the track of the same class whose latest outline overlaps it most, if that
    track was seen within `max_gap` frames."""
    tracks: list[dict] = []
    by_frame: dict[int, list[dict]] = {}
    for o in observations:
        by_frame.setdefault(o["frame"], []).append(o)
    for frame in sorted(by_frame):
        live = [t for t in tracks if frame - t["last"] <= max_gap]
        views = by_frame[frame]
        polys = [Polygon(o["poly"]).buffer(0) for o in views]
        # a view may join a live track of its own class and registration segment
        same = (np.array([(o["class_id"], o["segment"]) for o in views])[:, None, :] ==
                np.array([(t["class_id"], t["segment"]) for t in live]).reshape(-1, 2)[None, :, :]).all(2)
        v = _ious(np.array(polys, dtype=object), np.array([t["poly"] for t in live], dtype=object), same)
        pairs = [(v[i, j], i, id(live[j]), live[j]) for i, j in zip(*np.nonzero(v >= iou))]
        used_o, used_t = set(), set()
        for v, i, tid, t in sorted(pairs, key=lambda x: -x[0]):
            if i in used_o or tid in used_t:
                continue
            used_o.add(i)
            used_t.add(tid)
            t["views"].append(by_frame[frame][i])
            t["poly"], t["last"] = polys[i], frame
        for i, o in enumerate(by_frame[frame]):
            if i not in used_o:
                tracks.append({"class_id": o["class_id"], "segment": o["segment"], "poly": polys[i], "last": frame, "views": [o]})
    return [t["views"] for t in tracks]

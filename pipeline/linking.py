"""Linking views across frames: the same wall seen in 300 frames is one wall.

`Registrar` maps each frame into one mosaic plane by homographies (ORB + USAC); `link` groups
component views whose outlines overlap in that plane.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon, box

# Each frame is registered twice: to the frame before it, which is precise from one frame to the next
# but, chained over a 10 s 720p pass, drifts 180-250 px by its end; and to a keyframe, which does not
# drift but jitters more from frame to frame, and the linking of thin components (slabs, beams) needs
# frame-to-frame precision. The frame's corners go KEY_BLEND of the way from the chained estimate to
# the keyframe's, a complementary filter. A frame becomes the keyframe when the old one overlaps it less
# than KEY_OVERLAP or matches it with fewer than KEY_INLIERS inliers.
# Facades repeat (bricks, window rows), so half of a pair's cross-checked ORB matches are wrong; plain
# RANSAC then both runs long and settles on a worse model than OpenCV's USAC_ACCURATE (GC-RANSAC, local
# optimisation). With its steadier keyframe estimates the blend can lean further on the keyframe: on 5
# synthetic passes mean error 8.6 -> 2.6 px and frame-to-frame jitter 1.21 -> 0.94 px, and on 3 passes
# not used to choose 0.35, 8.6 -> 6.8 px and 0.79 -> 0.72 px (5.3 px once `_features` turned frames grey before
# shrinking them, a change of rounding only; `python benchmarks/registration.py`).
KEY_OVERLAP, KEY_INLIERS, KEY_BLEND = 0.6, 40, 0.35
HOMOGRAPHY_METHOD = cv2.USAC_ACCURATE
# ORB's FAST corners need contrast. A thermal frame (or haze, dusk) at 320 px gives 100-560 of the 1000 keypoints
# asked for, and few pairs of such frames match; locally equalised (CLAHE, the usual clip 2 on 8x8 tiles) it gives
# 2-4x as many. Only frames under LOW_FEATURES are equalised: nearly every frame of the synthetic colour passes
# gives more (369-709), and their error and roll-up are unchanged, while the real thermal pass falls into 46
# stretches instead of 58 (CLAHE clip 1-4 on 4x4 or 8x8 tiles: 38-49; `python benchmarks/registration.py`).
LOW_FEATURES = 400


class Registrar:
    """`history` keeps the last few frames: a frame that matches neither the frame before it nor the
    keyframe (a drone zig-zagging along a facade, photos with little overlap, one blurred frame) is tried
    against the older ones, and rejoins their segment if one matches, before a new segment starts."""

    def __init__(self, width: int = 320, history: int = 3, key_overlap: float | None = None, key_blend: float | None = None,
                 method: int | None = None, low_features: int | None = None):
        # key_overlap > 1: every frame is the keyframe, i.e. each is chained to the one before (the benchmark's baseline);
        # key_blend, method (a cv2.findHomography method) and low_features (0: never equalise) let the benchmark
        # rebuild earlier registrars
        self.width, self.key_overlap = width, KEY_OVERLAP if key_overlap is None else key_overlap
        self.key_blend = KEY_BLEND if key_blend is None else key_blend
        self.method = HOMOGRAPHY_METHOD if method is None else method
        self.orb = cv2.ORB_create(1000, fastThreshold=10)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self.clahe = cv2.createCLAHE(2.0, (8, 8))
        self.low_features = LOW_FEATURES if low_features is None else low_features
        self.recent: deque = deque(maxlen=history)  # (features, H into its segment's plane, segment), newest last
        self.key = None  # one of those: the frame later frames also register to while they overlap it
        self.H = np.eye(3)
        self.segment = 0
        self.segments = 1  # ids handed out so far; a new segment takes the next one

    def _features(self, image):
        s = self.width / image.shape[1]
        # grey first, then shrink: a third of the pixels to resize (0.5 against 1.3 ms at 720p)
        gray = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        kp, des = self.orb.detectAndCompute(gray, None)
        if len(kp) < self.low_features:  # a low-contrast frame: see LOW_FEATURES
            kp2, des2 = self.orb.detectAndCompute(self.clahe.apply(gray), None)
            if len(kp2) > len(kp):
                kp, des = kp2, des2
        return np.float32([k.pt for k in kp]) / s if kp else np.zeros((0, 2), np.float32), des

    def seed(self, image: np.ndarray | None, H: np.ndarray, segment: int, segments: int) -> None:
        """Continue from a known frame (resuming a run, or a new chunk); `image` None: that frame is unreadable."""
        self.H, self.segment, self.segments = np.asarray(H, float), segment, segments
        self.recent.clear()
        self.key = None
        if image is not None:
            self.key = (self._features(image), self.H.copy(), segment)
            self.recent.append(self.key)

    def update(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """This frame's homography into its segment's mosaic plane, and that segment (views in
        different segments never link). A new segment starts where registration fails, e.g. at a cut."""
        feats = self._features(image)
        if not self.recent and self.key is None:  # the first frame, or after an unreadable seed frame
            return self._push(feats, self.H, self.segment, key=True)
        chained = keyed = None
        if self.recent:
            prev, H_prev, seg = self.recent[-1]
            step, _ = self._match(prev, feats)
            chained = None if step is None else (H_prev @ step, seg)
        key_fresh = False
        if self.key is not None and (not self.recent or self.key[0] is not self.recent[-1][0]):
            kf, kH, kseg = self.key
            rel, n = self._match(kf, feats)
            if rel is not None:
                keyed = (kH @ rel, kseg)
                key_fresh = n >= KEY_INLIERS and _overlap(rel, image.shape) >= self.key_overlap
        elif chained is not None:  # the frame before is the keyframe
            key_fresh = _overlap(step, image.shape) >= self.key_overlap
        if chained is not None and keyed is not None and chained[1] == keyed[1]:
            return self._push(feats, _blend(chained[0], keyed[0], image.shape, self.key_blend), chained[1], key=not key_fresh)
        if chained is not None or keyed is not None:
            H, seg = chained if chained is not None else keyed
            return self._push(feats, H, seg, key=not key_fresh)
        for prev, H_prev, seg in list(self.recent)[-2::-1]:  # older frames, newest first
            rel, _ = self._match(prev, feats)
            if rel is not None:
                return self._push(feats, H_prev @ rel, seg, key=True)
        self.segments += 1
        return self._push(feats, np.eye(3), self.segments - 1, key=True)

    def _push(self, feats, H: np.ndarray, segment: int, key: bool) -> tuple[np.ndarray, int]:
        self.H, self.segment = np.asarray(H, float), segment
        self.recent.append((feats, self.H.copy(), segment))
        if key:
            self.key = self.recent[-1]
        return self.H.copy(), self.segment

    def _match(self, a, b) -> tuple[np.ndarray | None, int]:
        """Homography taking frame b's points to frame a's, and its inlier count."""
        (pa, da), (pb, db) = a, b
        if da is None or db is None or len(da) < 8 or len(db) < 8:
            return None, 0
        m = self.matcher.match(db, da)
        if len(m) < 12:
            return None, 0
        src = pb[[x.queryIdx for x in m]]
        dst = pa[[x.trainIdx for x in m]]
        H, inl = cv2.findHomography(src, dst, self.method, 3.0)
        if H is None or inl.sum() < 10 or not 0.5 < np.linalg.det(H[:2, :2]) < 2.0:
            return None, 0
        return H, int(inl.sum())


def _blend(A: np.ndarray, B: np.ndarray, shape, t: float) -> np.ndarray:
    """The homography whose image of the frame's corners lies `t` of the way from A's to B's."""
    h, w = shape[:2]
    c = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    a, b = cv2.perspectiveTransform(c, A), cv2.perspectiveTransform(c, B)
    return cv2.getPerspectiveTransform(c, ((1 - t) * a + t * b).astype(np.float32)).astype(float)


def _overlap(H: np.ndarray, shape) -> float:
    """Share of a frame that lands inside the other frame under H (both of `shape`)."""
    h, w = shape[:2]
    corners = cv2.perspectiveTransform(np.float64([[[0, 0]], [[w, 0]], [[w, h]], [[0, h]]]), H).reshape(4, 2)
    return Polygon(corners).buffer(0).intersection(box(0, 0, w, h)).area / (w * h)


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


def merge_fragments(tracks: list[list[dict]], max_gap: int = 30, inside: float = 0.6) -> list[list[dict]]:
    """Fold a track into a longer one of its class and segment, seen in two frames or more, when its largest
    view lies mostly (`inside`) within the longer one's and the two are seen within `max_gap` frames of each other.
    Such a track is a piece of that component, segmented apart for a few frames: walls, columns and panes
    do not nest. Two one-frame tracks never merge into a component: where registration breaks, those are
    mostly mis-segmentations. It relies on registration that holds over the pass, not only frame to frame."""
    order = sorted(range(len(tracks)), key=lambda i: -len(tracks[i]))
    best = {i: Polygon(max(tracks[i], key=lambda v: v["area"])["poly"]).buffer(0) for i in order}
    span = {i: (tracks[i][0]["frame"], tracks[i][-1]["frame"]) for i in order}
    frames = {i: {v["frame"] for v in tracks[i]} for i in order}
    groups: dict[tuple, list[int]] = {}  # longer tracks first within each (class, segment)
    for i in order:
        groups.setdefault((tracks[i][0]["class_id"], tracks[i][0]["segment"]), []).append(i)
    into: dict[int, int] = {}
    for members in groups.values():
        for k, i in enumerate(members):
            small, (a0, a1) = best[i], span[i]
            if small.area <= 0:
                continue
            for j in members[:k]:
                b0, b1 = span[j]
                if j in into or len(frames[j]) < 2 or a0 - b1 > max_gap or b0 - a1 > max_gap:
                    continue
                if small.intersection(best[j]).area / small.area >= inside:
                    into[i] = j
                    break
    merged = {i: list(tracks[i]) for i in order if i not in into}
    for i, j in into.items():
        merged[j].extend(tracks[i])
    return [sorted(v, key=lambda o: o["frame"]) for i, v in sorted(merged.items())]


def presence(tracks: list[list[dict]], footprints: list, max_gap: int = 30, cover: float = 0.5) -> list[float]:
    """For each track, the share of the frames that showed its place in which it was seen. A frame shows the
    place when it covers at least `cover` of the track's largest outline; frames count within `max_gap` of the
    track's first and last views, in its segment. `footprints`: [frame, segment, 4 corners] per frame, in the
    mosaic plane. A wall is seen in nearly every frame that shows it; a beam the segmenter reads into a wall's
    texture for three frames, while that wall fills the next forty, is not a beam."""
    grouped: dict[int, list] = {}
    for f in sorted(footprints, key=lambda f: f[0]):
        grouped.setdefault(f[1], []).append(f)
    by_seg = {seg: (np.array([f[0] for f in fs]), np.array([Polygon(f[2]).buffer(0) for f in fs], dtype=object))
              for seg, fs in grouped.items()}
    out = []
    for views in tracks:
        seen = {v["frame"] for v in views}
        frames, polys = by_seg.get(views[0]["segment"], (np.zeros(0, int), np.zeros(0, object)))
        lo = np.searchsorted(frames, min(seen) - max_gap, side="left")
        hi = np.searchsorted(frames, max(seen) + max_gap, side="right")
        place = Polygon(max(views, key=lambda v: v["area"])["poly"]).buffer(0)
        if place.area <= 0 or hi <= lo:
            out.append(1.0)
            continue
        shown = int((shapely.area(shapely.intersection(polys[lo:hi], place)) / place.area >= cover).sum())
        out.append(len(seen) / max(shown, len(seen)))
    return out

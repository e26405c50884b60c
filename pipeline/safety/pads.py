"""Photos whose borders were padded by reflection, and heads in those borders.

Datasets are often squared up by mirror-padding (OpenCV's BORDER_REFLECT / REFLECT_101, the default of
albumentations' PadIfNeeded), with the labels reflected into the pads too. A top or bottom pad then
shows its workers upside down, where a detector trained on upright people finds few of them. The scene
in a pad is a reflection of the band beside it, so the decisions taken in that band, reflected across
the pad's edge, are the pad's decisions: the rule never has to judge an upside-down hat. Off by default:
video frames are not padded (`mirrored_borders` in a hardhat_rule YAML turns it on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from pipeline.safety.core import Decision

WIDTH = 256  # pads are found on a copy this wide: enough rows to place a pad's edge, cheap on a large photo
MAX_ERR = 6.0  # mean absolute grey difference between a pad and its mirror band (JPEG noise passes)
MIN_STD = 8.0  # a flat band (sky, a white wall) is symmetric about any line; it is not a pad
MIN_PAD = 4  # px at WIDTH scale
MAX_RATIO = 0.3  # mirrored error / unmirrored error


@dataclass(frozen=True)
class Pads:
    """Mirror-padded border widths in pixels of the full image; 0 where a side is not padded."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def __bool__(self) -> bool:
        return bool(self.top or self.bottom or self.left or self.right)


def _pad_rows(g: np.ndarray) -> int:
    """The widest p such that rows [0, p) mirror the rows after them (with or without the edge row repeated)."""
    h = g.shape[0]
    if h < 2 * MIN_PAD + 2:
        return 0
    # row distances at offsets 1..8; the 4 row pairs nearest a mirror line must match before the
    # whole pad is compared, which rules out nearly every line at the cost of a few array passes
    near = range(4)
    d = [np.abs(g[: h - s] - g[s:]).mean(1) for s in range(1, 2 * len(near) + 1)]
    for p in range(h // 2 - 1, MIN_PAD - 1, -1):
        refl = np.mean([d[2 * k][p - 1 - k] for k in near])  # rows p-1-k and p+k
        refl101 = np.mean([d[2 * k + 1][p - 1 - k] for k in near])  # rows p-1-k and p+1+k
        if min(refl, refl101) >= 2 * MAX_ERR:  # loose: resizing blurs the rows at the seam
            continue
        pad = g[:p][::-1]
        band = g[p : 2 * p]
        if band.std() < MIN_STD:
            continue
        # a textured band (concrete, brick) looks alike shifted or mirrored; a pad matches its mirror far
        # better than the same band unmirrored
        null = np.abs(g[:p] - band).mean()
        err = min(np.abs(pad - band).mean(), np.abs(pad - g[p + 1 : 2 * p + 1]).mean() if 2 * p + 1 <= h else np.inf)
        if err < MAX_ERR and err < MAX_RATIO * null:
            return p
    return 0


def find_pads(image: np.ndarray) -> Pads:
    g = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = g.shape[:2]
    k = min(1.0, WIDTH / max(h, w))
    small = cv2.resize(g, (max(round(w * k), 1), max(round(h * k), 1)), interpolation=cv2.INTER_AREA).astype(np.float32)
    sides = (_pad_rows(small), _pad_rows(small[::-1]), _pad_rows(small.T), _pad_rows(small.T[::-1]))
    return Pads(*(round(s / k) for s in sides))


def _reflect(d: Decision, axis: int, line: float, where: str) -> Decision:
    def fx(v):
        return 2 * line - v

    def box(b):
        if b is None:
            return None
        if axis == 0:
            return (fx(b[2]), b[1], fx(b[0]), b[3])
        return (b[0], fx(b[3]), b[2], fx(b[1]))

    h = d.head
    pt = (fx(h.point[0]), h.point[1]) if axis == 0 else (h.point[0], fx(h.point[1]))
    head = replace(h, point=pt, region=box(h.region), person_box=box(h.person_box), track_id=-1)
    return replace(d, head=head, hat_box=box(d.hat_box), why={"rule": f"reflection into the mirrored {where} border",
                                                              "of": d.why})


def reflect_into_pads(decisions: list[Decision], pads: Pads, shape: tuple[int, int]) -> list[Decision]:
    """Decisions in the real image, plus their reflections that land inside a pad. A decision the rule took
    inside a pad is kept only where no reflection covers it: there the rule judged an upside-down or cut-off
    copy of someone it sees whole beside the pad, but it may also have found someone whose upright copy it missed."""
    if not pads:
        return decisions
    h, w = shape[:2]

    def in_pad(x, y):
        return y < pads.top or y >= h - pads.bottom or x < pads.left or x >= w - pads.right

    inside = [d for d in decisions if in_pad(*d.head.point)]
    out = [d for d in decisions if not in_pad(*d.head.point)]
    # left / right first, then top / bottom over everything so far, so a corner gets its double reflection
    for axis, sides in ((0, (("left", pads.left, 0), ("right", pads.right, w))),
                        (1, (("top", pads.top, 0), ("bottom", pads.bottom, h)))):
        extra = []
        for name, p, edge in sides:
            if not p:
                continue
            line = p if edge == 0 else edge - p
            for d in out:
                r = _reflect(d, axis, line, name)
                v = r.head.point[axis]
                if (0 <= v < p) if edge == 0 else (edge - p <= v < edge):
                    extra.append(r)
        out = out + extra

    def covered(d):
        x, y = d.head.point
        return any(r.head.region[0] <= x <= r.head.region[2] and r.head.region[1] <= y <= r.head.region[3]
                   for r in out if r.why.get("rule", "").startswith("reflection"))

    return out + [d for d in inside if not covered(d)]

"""Drawing site-safety results: worker status, head points, hat boxes, zones."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import FrameResult

COLORS = {"worn": (0, 200, 0), "no_hat": (0, 0, 255), "unknown": (160, 160, 160), "ignored": (200, 200, 200)}


def annotate_safety(r: FrameResult, zones=None, violating: set[int] = frozenset(), scale: float = 1.0,
                    label: str | None = None) -> np.ndarray:
    img = r.frame.image
    out = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale != 1 else img.copy()
    s = lambda pts: (np.asarray(pts, float) * scale).astype(np.int32)  # noqa: E731
    if zones is not None:
        for _, poly in zones.mandatory:
            cv2.polylines(out, [s(poly.exterior.coords)], True, (0, 200, 255), 2)
        for _, poly in zones.ignore:
            cv2.polylines(out, [s(poly.exterior.coords)], True, (128, 128, 128), 1)
    d = r.detections
    if d is not None:
        for b in d.of("hardhat").xyxy:
            x0, y0, x1, y1 = s(b)
            cv2.rectangle(out, (x0, y0), (x1, y1), (255, 200, 0), 1)
    for dec in r.decisions:
        h = dec.head
        status = dec.status if dec.checked else "ignored"
        c = COLORS[status]
        if h.person_box is not None:
            x0, y0, x1, y1 = s(h.person_box)
            cv2.rectangle(out, (x0, y0), (x1, y1), c, 3 if h.track_id in violating else 1)
        x0, y0, x1, y1 = s(h.region)
        cv2.rectangle(out, (x0, y0), (x1, y1), c, 1)
        px, py = s(h.point)
        cv2.circle(out, (int(px), int(py)), 3, c, -1)
        # unrelated photos have no tracks: their heads carry no id
        ident = f"#{h.track_id} " if h.track_id >= 0 else ""
        text = f"{ident}{status}" + (" VIOLATION" if h.track_id in violating else "")
        cv2.putText(out, text, (int(x0), max(12, int(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1, cv2.LINE_AA)
    cv2.putText(out, label or f"frame {r.frame.index}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2,
                cv2.LINE_AA)
    return out

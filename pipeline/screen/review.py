"""The `review` policy's sink: a flagged frame and what was found on it, for a person to check."""

from __future__ import annotations

import json

import cv2

from pipeline.sinks import atomic_write


def write_review(folder, r, event: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"frame_{r.frame.index:06d}"
    ok, jpg = cv2.imencode(".jpg", r.frame.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if ok:
        atomic_write(folder / f"{stem}.jpg", jpg.tobytes())
    atomic_write(folder / f"{stem}.json", json.dumps(event, default=str, indent=1))

"""The `review` policy's sink: a flagged frame and what was found on it, for a person to check."""

from __future__ import annotations

import json

import cv2

from pipeline.sinks import atomic_write


def write_thumbnail(folder, r, size: int = 320) -> str:
    """A small JPEG of a flagged frame, for reports of runs whose source cannot be re-read (live
    cameras); returns its path relative to the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    s = size / max(r.frame.image.shape[:2])
    small = cv2.resize(r.frame.image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    name = f"frame_{r.frame.index:06d}.jpg"
    ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if ok:
        atomic_write(folder / name, jpg.tobytes())
    return f"{folder.name}/{name}"


def write_review(folder, r, event: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"frame_{r.frame.index:06d}"
    ok, jpg = cv2.imencode(".jpg", r.frame.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if ok:
        atomic_write(folder / f"{stem}.jpg", jpg.tobytes())
    atomic_write(folder / f"{stem}.json", json.dumps(event, default=str, indent=1))

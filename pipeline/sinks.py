"""Output files that are never seen half-written, and an event log that survives kill -9."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write beside the target, fsync, then rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_json(path: str | Path, obj, indent: int | None = 2) -> None:
    """`indent=None` for files only the program reads: json's C encoder runs only without indent,
    ~10x faster on a chunk marker with thousands of observations."""
    atomic_write(path, json.dumps(obj, indent=indent, default=_default, separators=None if indent else (",", ":")))


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


class EventLog:
    """events.jsonl, one line per frame, flushed as it goes. Each finished chunk records the
    byte offset it ended at; on resume the file is cut back to the last finished chunk, so
    events of a chunk that was interrupted are neither lost nor duplicated."""

    def __init__(self, path: Path, resume_offset: int | None = None):
        self.path = path
        if resume_offset is None or not path.exists():
            path.write_bytes(b"")
        else:
            with open(path, "r+b") as fh:
                fh.truncate(resume_offset)
        self.fh = open(path, "ab")

    def append(self, event: dict) -> None:
        self.fh.write((json.dumps(event, default=_default) + "\n").encode())
        self.fh.flush()

    def commit(self) -> int:
        """Make what was appended durable; the offset to resume from."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        self.fh.close()


class VideoPart:
    """One chunk's annotated frames, renamed into place only when the chunk is complete."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.writer = path, fps, None
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")

    def write(self, img: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)


def concat_videos(parts: list[Path], out: Path, fps: float) -> int:
    """Join the chunk videos into one file (written beside `out`, then renamed)."""
    part = VideoPart(out, fps)
    n = 0
    for p in parts:
        cap = cv2.VideoCapture(str(p))
        while True:
            ok, img = cap.read()
            if not ok:
                break
            part.write(img)
            n += 1
        cap.release()
    part.close()
    return n

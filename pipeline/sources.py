"""Frame sources: a video file, a folder or glob of images, or a stream/webcam.

Every source yields `Frame`s for the indices start, start+stride, ... (at most max_frames of
them), and can re-read a single frame by index, which resuming and frame linking need.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from pipeline.core import Frame
from pipeline.errors import SourceError
from pipeline.imageio import IMAGE_SUFFIXES, read_image
from pipeline.telemetry import parse_srt, sidecar_srt


@dataclass
class SourceOptions:
    stride: int = 1
    start: int = 0
    max_frames: int | None = None
    reconnect_tries: int = 5  # streams only: attempts after a drop before giving up
    reconnect_wait_s: float = 0.5  # first back-off; doubles per attempt
    reconnect_max_wait_s: float = 8.0

    def __post_init__(self):
        if self.stride < 1 or self.start < 0 or (self.max_frames is not None and self.max_frames < 1):
            raise SourceError(f"bad source options {self}", "use stride >= 1, start >= 0, max_frames >= 1")

    def indices(self, total: int) -> range:
        r = range(self.start, total, self.stride)
        return r if self.max_frames is None else r[: self.max_frames]


class VideoSource:
    def __init__(self, path: Path, opts: SourceOptions):
        self.path, self.opts, self.name = path, opts, str(path)
        if path.stat().st_size == 0:
            raise SourceError(f"video file {path} is empty (0 bytes)", "re-copy or re-export the video")
        cap = cv2.VideoCapture(str(path))
        ok, _ = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise SourceError(
                f"cannot decode {path} as a video (truncated, corrupt, or not a video)",
                "check the file plays in a video player, or pass a folder of images instead",
            )
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
        cap.release()
        srt = sidecar_srt(path)
        self.telemetry = parse_srt(srt) if srt else []
        self.skipped: list[str] = []

    def indices(self) -> range:
        return self.opts.indices(self.total)

    def _frame(self, i: int, img) -> Frame:
        tel = self.telemetry[i] if i < len(self.telemetry) else None
        return Frame(index=i, image=img, time_s=i / self.fps, source=self.name, telemetry=tel)

    def iter_range(self, first: int, stop: int) -> Iterator[Frame]:
        """Frames of this source's index plan that fall in [first, stop)."""
        return self._decode([i for i in self.indices() if first <= i < stop])

    def _decode(self, wanted: list[int]) -> Iterator[Frame]:
        if not wanted:
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            if wanted[0] > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, wanted[0])
            pos, want = wanted[0], set(wanted)
            while pos <= wanted[-1]:
                # grab() skips decoding work for frames the stride drops
                if pos in want:
                    ok, img = cap.read()
                    if not ok:
                        self.skipped.append(f"{self.path}#frame{pos}: video ends early (truncated?)")
                        return
                    yield self._frame(pos, img)
                elif not cap.grab():
                    return
                pos += 1
        finally:
            cap.release()

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_range(0, self.total)

    def read_at(self, i: int) -> Frame | None:
        return next(self._decode([i]), None)


class ImageSource:
    def __init__(self, files: list[Path], opts: SourceOptions, name: str, fps: float = 1.0):
        if not files:
            raise SourceError(f"no images found in {name}", f"put {', '.join(sorted(IMAGE_SUFFIXES))} files there")
        self.files, self.opts, self.name, self.fps = files, opts, name, fps
        self.total = len(files)
        self.telemetry: list = []
        self.skipped: list[str] = []

    def indices(self) -> range:
        return self.opts.indices(self.total)

    def iter_range(self, first: int, stop: int) -> Iterator[Frame]:
        for i in self.indices():
            if first <= i < stop and (f := self.read_at(i)) is not None:
                yield f

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_range(0, self.total)

    def read_at(self, i: int) -> Frame | None:
        img = read_image(self.files[i])
        if img is None:
            self.skipped.append(f"{self.files[i]}: unreadable image")
            return None
        return Frame(index=i, image=img, time_s=i / self.fps, source=str(self.files[i]))


class StreamSource:
    """RTSP/HTTP streams and webcams: unbounded, not seekable, so no resume.

    A dropped stream is reopened with exponential back-off; each outage is recorded in `gaps`.
    Frame times are wall-clock seconds since the stream opened, so gaps show in them too.
    """

    def __init__(self, url: str, opts: SourceOptions):
        self.name, self.opts = url, opts
        self.cap = self._open()
        if self.cap is None:
            what = "camera" if url.isdigit() else "stream"
            raise SourceError(f"cannot open {what} {url!r}",
                              "check the camera index is connected" if url.isdigit() else
                              "check the URL, and that the stream is up and reachable from this machine")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.total = None
        self.telemetry: list = []
        self.skipped: list[str] = []
        self.gaps: list[dict] = []

    def _open(self):
        cap = cv2.VideoCapture(int(self.name) if self.name.isdigit() else self.name)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _reconnect(self, t0: float) -> bool:
        self.cap.release()
        lost, wait = time.monotonic(), self.opts.reconnect_wait_s
        for attempt in range(1, self.opts.reconnect_tries + 1):
            time.sleep(wait)
            cap = self._open()
            if cap is not None:
                self.cap = cap
                self.gaps.append({"lost_at_s": round(lost - t0, 3), "seconds": round(time.monotonic() - lost, 3),
                                  "attempts": attempt, "recovered": True})
                return True
            wait = min(wait * 2, self.opts.reconnect_max_wait_s)
        self.gaps.append({"lost_at_s": round(lost - t0, 3), "seconds": round(time.monotonic() - lost, 3),
                          "attempts": self.opts.reconnect_tries, "recovered": False})
        return False

    def indices(self):
        return None

    def __iter__(self) -> Iterator[Frame]:
        i, n, t0 = 0, 0, time.monotonic()
        while self.opts.max_frames is None or n < self.opts.max_frames:
            ok, img = self.cap.read()
            if not ok:
                # a camera index or a stream that ended or dropped: try to get it back before giving up
                if self.opts.reconnect_tries and self._reconnect(t0):
                    continue
                return
            if i >= self.opts.start and (i - self.opts.start) % self.opts.stride == 0:
                n += 1
                yield Frame(index=i, image=img, time_s=time.monotonic() - t0, source=self.name)
            i += 1

    def read_at(self, i: int):
        return None


def check_some_read(name: str, n_read: int, skipped: list[str]) -> None:
    """A run over inputs none of which could be read is a bad source, not an empty result."""
    if n_read == 0 and skipped:
        raise SourceError(f"none of the {len(skipped)} inputs of {name} could be read (first: {skipped[0]})",
                          "check that the files are images or video that OpenCV reads, not renamed or truncated ones")


def open_source(spec: str | Path, opts: SourceOptions | None = None):
    """Pick the source type from what `spec` is."""
    opts = opts or SourceOptions()
    s = str(spec)
    if s.isdigit() or "://" in s:
        return StreamSource(s, opts)
    p = Path(s)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(files, opts, s)
    if any(ch in s for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(s) if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(files, opts, s)
    if not p.exists():
        raise SourceError(f"source {s} does not exist", "pass an existing video, image folder, glob, URL or camera index")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([p], opts, s)
    return VideoSource(p, opts)

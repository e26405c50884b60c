"""Alerts: a JSONL log, a snapshot per alert, and an optional webhook that never loses an alert.

Every alert bound for the webhook is first written to OUT/outbox/ and removed only after the
server answered 2xx. While the webhook is down, delivery is retried with exponential back-off;
whatever is still pending when the run ends is retried by the next run on the same folder, or by
`inspectflow alerts retry --out OUT`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
from pydantic import BaseModel, ConfigDict, Field

from pipeline.sinks import EventLog, atomic_json, atomic_write


class AlertConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook: str | None = Field(None, pattern=r"^https?://", description="POST each alert as JSON to this URL")
    timeout_s: float = Field(3.0, gt=0)
    retry_first_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    snapshot: bool = True


def post_json(url: str, payload: dict, timeout: float) -> None:
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if not 200 <= resp.status < 300:
            raise urllib.error.HTTPError(url, resp.status, "not 2xx", resp.headers, None)


class Outbox:
    """Alerts waiting for the webhook, one file each, sent oldest first."""

    def __init__(self, folder: Path, cfg: AlertConfig):
        self.folder, self.cfg = Path(folder), cfg
        self.delay, self.next_try = cfg.retry_first_s, 0.0
        self.delivered, self.failures = 0, 0

    def put(self, alert: dict) -> None:
        atomic_json(self.folder / f"{time.time_ns()}-{alert['id']}.json", alert)

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("*.json")) if self.folder.exists() else []

    def deliver(self, force: bool = False) -> int:
        """Send what waits, oldest first; stop at the first failure and back off. Returns how many still wait."""
        if not self.cfg.webhook or (not force and time.monotonic() < self.next_try):
            return len(self.pending())
        for f in self.pending():
            try:
                post_json(self.cfg.webhook, json.loads(f.read_text()), self.cfg.timeout_s)
            except (OSError, urllib.error.URLError, ValueError):
                self.failures += 1
                self.next_try = time.monotonic() + self.delay
                self.delay = min(self.delay * 2, self.cfg.retry_max_s)
                break
            f.unlink()
            self.delivered += 1
            self.delay = self.cfg.retry_first_s
        return len(self.pending())


class AlertSink:
    def __init__(self, out: Path, cfg: AlertConfig):
        self.out, self.cfg = Path(out), cfg
        self.outbox = Outbox(self.out / "outbox", cfg)
        self.log = EventLog(self.out / "alerts.jsonl", resume_offset=None)
        self.count = 0

    def emit(self, alert: dict, image=None) -> dict:
        self.count += 1
        alert = {"id": f"{alert['type']}-{alert['track_id']}-{alert['frame']:07d}", **alert}
        if image is not None and self.cfg.snapshot:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            snap = self.out / "snapshots" / f"{alert['id']}.jpg"
            atomic_write(snap, buf.tobytes())
            alert["snapshot"] = str(snap.relative_to(self.out))
        self.log.append(alert)
        if self.cfg.webhook:
            self.outbox.put(alert)
            self.outbox.deliver()
        return alert

    def close(self) -> dict:
        left = self.outbox.deliver(force=True)
        self.log.commit()
        self.log.close()
        return {"alerts": self.count, "webhook": self.cfg.webhook, "delivered": self.outbox.delivered,
                "failed_attempts": self.outbox.failures, "pending": left}

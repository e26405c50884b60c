"""Typed detections and per-worker decisions, as they flow from the detector to the rule and the sinks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """N boxes of one frame. `keypoints` holds one head point per box (NaN where the class has none)."""

    xyxy: np.ndarray  # (N, 4) float
    confidence: np.ndarray  # (N,)
    class_id: np.ndarray  # (N,) int
    keypoints: np.ndarray  # (N, 2) float
    keypoint_confidence: np.ndarray  # (N,)
    tracker_id: np.ndarray  # (N,) int, -1 where untracked
    names: tuple[str, ...] = ("person", "hardhat", "head")

    @classmethod
    def empty(cls, names=("person", "hardhat", "head")) -> Detections:
        z = np.zeros((0,))
        return cls(np.zeros((0, 4)), z, z.astype(int), np.zeros((0, 2)), z, z.astype(int) - 1, tuple(names))

    @classmethod
    def from_ultralytics(cls, result) -> Detections:
        b = result.boxes
        n = len(b)
        kp, kc = np.full((n, 2), np.nan), np.zeros(n)
        if getattr(result, "keypoints", None) is not None and n:
            kp = result.keypoints.xy.cpu().numpy()[:, 0, :].astype(float)
            conf = result.keypoints.conf
            kc = conf.cpu().numpy()[:, 0].astype(float) if conf is not None else np.ones(n)
        ids = b.id.cpu().numpy().astype(int) if b.id is not None else np.full(n, -1)
        names = tuple(result.names[i] for i in sorted(result.names))
        return cls(b.xyxy.cpu().numpy().astype(float), b.conf.cpu().numpy().astype(float), b.cls.cpu().numpy().astype(int),
                   kp, kc, ids, names)

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, mask) -> Detections:
        return Detections(self.xyxy[mask], self.confidence[mask], self.class_id[mask], self.keypoints[mask],
                          self.keypoint_confidence[mask], self.tracker_id[mask], self.names)

    def of(self, name: str) -> Detections:
        return self[self.class_id == self.names.index(name)] if name in self.names else self[np.zeros(len(self), bool)]


@dataclass
class Head:
    """One worker's head as the rule sees it: a point, a region around it, and where they came from."""

    point: tuple[float, float]
    point_conf: float
    region: tuple[float, float, float, float]  # x0, y0, x1, y1 of the head
    score: float  # detection score of the person or head box
    source: str  # pose | head_box | both
    person_box: tuple[float, float, float, float] | None = None
    track_id: int = -1


@dataclass
class Decision:
    head: Head
    status: str  # worn | no_hat | unknown
    hat_box: tuple[float, float, float, float] | None = None
    hat_score: float | None = None
    why: dict = field(default_factory=dict)
    zone: str | None = None  # the mandatory zone the worker stands in, if zones are set
    checked: bool = True  # False outside mandatory zones or inside an ignored one

    def to_json(self) -> dict:
        h = self.head
        r = lambda v: None if v is None else [round(float(x), 1) for x in v]  # noqa: E731
        return {"track_id": h.track_id, "status": self.status, "head": r(h.point), "head_conf": round(h.point_conf, 3),
                "head_box": r(h.region), "person_box": r(h.person_box), "score": round(h.score, 3), "source": h.source,
                "hat_box": r(self.hat_box), "hat_score": None if self.hat_score is None else round(self.hat_score, 3),
                "zone": self.zone, "checked": self.checked, "why": self.why}


def call_score(d: dict) -> float:
    """How sure a decision (`Decision.to_json()`) is: a wearer by its head and hat scores, a non-wearer by
    its head score and how faint any hat on that head was. Ranks violations; `no_hat_min_score` cuts on it."""
    hat = d["hat_score"] if d["status"] == "worn" else 1 - d["why"].get("faint_hat_conf", 0.0)
    return d["score"] * hat

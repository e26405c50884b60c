"""Each tracked worker's hat status over time: a violation is raised only after N seconds without a
hat, and cleared only after N seconds with one, so a single missed detection raises nothing."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class StatusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    violation_after_s: float = Field(2.0, ge=0, description="seconds without a hat before a violation is raised")
    clear_after_s: float = Field(2.0, ge=0, description="seconds with a hat before it is cleared")
    forget_after_s: float = Field(10.0, gt=0, description="a track unseen this long is closed")


@dataclass
class _Track:
    violating: bool = False
    streak: str | None = None  # the status of the current run of observations
    streak_since: float = 0.0
    last_seen: float = 0.0
    alert_id: str | None = None


class WorkerStatus:
    def __init__(self, cfg: StatusConfig):
        self.cfg, self.tracks = cfg, {}

    def update(self, t: float, observed: dict[int, str]) -> list[dict]:
        """`observed`: track id -> worn | no_hat | unknown at time `t`. Returns start/end transitions."""
        out = []
        for tid, status in observed.items():
            tr = self.tracks.setdefault(tid, _Track(streak_since=t))
            tr.last_seen = t
            if status == "unknown":
                continue  # neither evidence for nor against: keep the current streak running
            if status != tr.streak:
                tr.streak, tr.streak_since = status, t
            held = t - tr.streak_since
            if not tr.violating and status == "no_hat" and held >= self.cfg.violation_after_s:
                tr.violating = True
                out.append({"type": "violation_start", "track_id": tid, "time_s": round(t, 3),
                            "without_hat_s": round(held, 3)})
            elif tr.violating and status == "worn" and held >= self.cfg.clear_after_s:
                tr.violating = False
                out.append({"type": "violation_end", "track_id": tid, "time_s": round(t, 3), "with_hat_s": round(held, 3)})
        for tid in [k for k, tr in self.tracks.items() if t - tr.last_seen > self.cfg.forget_after_s]:
            if self.tracks[tid].violating:
                out.append({"type": "violation_end", "track_id": tid, "time_s": round(t, 3), "reason": "left view"})
            del self.tracks[tid]
        return out

    def violating(self) -> set[int]:
        return {k for k, tr in self.tracks.items() if tr.violating}

"""Small typed objects that flow from sources through stages to sinks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COMPONENT_CLASSES = ("background", "wall", "beam", "column", "window_frame", "window_pane", "balcony", "slab")
DAMAGE_CLASSES = ("background", "crack", "spall", "rebar")
DAMAGE_STATES = ("none", "light", "moderate", "severe")
# Components that can carry structural damage; glass and frames are only ever "none".
DAMAGEABLE = frozenset({1, 2, 3, 6, 7})


@dataclass
class Telemetry:
    time_s: float | None = None
    lat: float | None = None
    lon: float | None = None
    alt_m: float | None = None


@dataclass
class Frame:
    index: int
    image: np.ndarray  # HxWx3 uint8, BGR (OpenCV order)
    time_s: float
    source: str
    telemetry: Telemetry | None = None


@dataclass
class Component:
    """One structural component seen in one frame."""

    class_id: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    rect: tuple  # cv2.minAreaRect output: ((cx, cy), (w, h), angle)
    area_px: int
    damage_px: dict[str, int] = field(default_factory=dict)
    state: int | None = None
    state_scores: list[float] | None = None

    @property
    def class_name(self) -> str:
        return COMPONENT_CLASSES[self.class_id]

    @property
    def state_name(self) -> str | None:
        return None if self.state is None else DAMAGE_STATES[self.state]

    def damage_ratio(self) -> float:
        return sum(self.damage_px.values()) / max(self.area_px, 1)

    def to_json(self) -> dict:
        return {"class": self.class_name, "box": list(self.box), "area_px": self.area_px, "damage_px": self.damage_px,
                "state": self.state_name, "scores": self.state_scores}


@dataclass
class FrameResult:
    """Everything the stages found on one frame; each stage fills its own fields."""

    frame: Frame
    damage_mask: np.ndarray | None = None  # HxW uint8, values index DAMAGE_CLASSES
    component_mask: np.ndarray | None = None  # HxW uint8, values index COMPONENT_CLASSES
    components: list[Component] = field(default_factory=list)
    detections: object | None = None  # pipeline.safety.core.Detections
    decisions: list = field(default_factory=list)  # pipeline.safety.core.Decision, one per worker head
    reused: bool = False  # True when the frame gate gave it the last computed frame's results
    motion: tuple[float, float] | None = None  # (dx, dy) px from the last computed frame, when the gate measured it
    screen: dict = field(default_factory=dict)  # target stage -> {score, flagged, policy, inputs}

    def screen_action(self) -> str | None:
        """The strongest policy among the screens that flagged this frame: drop > review > annotate."""
        flagged = [s["policy"] for s in self.screen.values() if s["flagged"]]
        return next((p for p in ("drop", "review", "annotate") if p in flagged), None)

    def drop_findings(self) -> None:
        """A screened-out frame keeps its image but reports nothing found on it."""
        if self.damage_mask is not None:
            self.damage_mask = np.zeros_like(self.damage_mask)
        self.components = []
        self.decisions = []

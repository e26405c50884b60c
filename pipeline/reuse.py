"""Frame reuse: a frame that shows what the last computed frame showed takes that frame's results
instead of running the stages.

Two modes:
- `still` (fixed cameras): the frame must match the reference pixel for pixel, within `max_diff`.
- `motion` (drone passes): the camera may have moved. The shift from the reference is estimated by
  phase correlation on grey thumbnails, the frame must match the *shifted* reference, and the
  reference's masks and components are shifted to the new frame. A drone sliding 3 px per frame
  along a facade computes one frame in `max_run + 1` and the rest cost a thumbnail and a warp.

The gate compares with the last *computed* frame, not the previous one, so drift adds up and forces
a recompute; `max_run` bounds how stale results can get, `max_shift` how much new image (entering
at the border, unseen by the models) a reused frame may hold.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core import Frame, FrameResult

_SHIFT_W = 256  # thumbnail width for the shift estimate: ~1/5 px there is ~1 px on a 1280 px frame


class ReuseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    mode: Literal["still", "motion"] = "still"
    max_diff: float = Field(1.5, ge=0, description="mean absolute grey-level change (0-255) on a 64 px thumbnail "
                            "(still) or, after the shift, on a 256 px one (motion: its noise floor is higher, ~2.5 on drone video)")
    max_run: int = Field(5, ge=1, description="at most this many frames in a row reuse one result")
    max_shift: float = Field(0.06, gt=0, lt=0.5, description="motion mode: largest shift from the reference, "
                             "as a share of the frame's width and height")


def _grey(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    return cv2.resize(g, (width, max(1, round(width * h / w))), interpolation=cv2.INTER_AREA).astype(np.float32)


def _aligned_diff(a: np.ndarray, b: np.ndarray, dx: float, dy: float) -> float:
    """Mean |a shifted by (dx, dy) - b|, sub-pixel, away from the border the shift exposes."""
    shifted = cv2.warpAffine(a, np.float32([[1, 0, dx], [0, 1, dy]]), (a.shape[1], a.shape[0]), flags=cv2.INTER_LINEAR)
    m = int(np.ceil(max(abs(dx), abs(dy)))) + 1
    return float(np.abs(shifted - b)[m:-m, m:-m].mean())


def shift_result(ref: FrameResult, frame: Frame, dx: float, dy: float) -> FrameResult:
    """`ref`'s findings moved by (dx, dy) px onto `frame`; components that leave the frame are dropped,
    and the strip that entered at the border reads as nothing found."""
    if dx == 0 and dy == 0:
        return replace(ref, frame=frame, reused=True)
    h, w = frame.image.shape[:2]
    M = np.float32([[1, 0, dx], [0, 1, dy]])

    def move(mask):
        if mask is None:
            return None
        return cv2.warpAffine(mask, M, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    comps = []
    for c in ref.components:
        x0, y0, x1, y1 = c.box
        box = (int(round(x0 + dx)), int(round(y0 + dy)), int(round(x1 + dx)), int(round(y1 + dy)))
        vis = (min(box[2], w) - max(box[0], 0)) * (min(box[3], h) - max(box[1], 0))
        if min(box[2], w) <= max(box[0], 0) or min(box[3], h) <= max(box[1], 0) or vis < 0.5 * (x1 - x0) * (y1 - y0):
            continue  # mostly out of view now: the next computed frame sees what is left of it
        (cx, cy), size, ang = c.rect
        comps.append(replace(c, box=box, rect=((cx + dx, cy + dy), size, ang)))
    return replace(ref, frame=frame, reused=True, damage_mask=move(ref.damage_mask),
                   component_mask=move(ref.component_mask), components=comps)


class FrameGate:
    def __init__(self, cfg: ReuseConfig):
        self.cfg = cfg
        self.ref: tuple[np.ndarray, np.ndarray | None] | None = None  # (64 px thumb, shift thumb) of the reference
        self.ref_result: FrameResult | None = None
        self.run = 0
        self.reused = 0
        self.motion: list[tuple[float, float] | None] = []  # per frame of the last plan(); see plan()

    @staticmethod
    def thumb(img: np.ndarray) -> np.ndarray:
        return _grey(img, 64)

    def _match(self, ref, cur, scale_to: int) -> tuple[float, float] | None:
        """The (dx, dy) in full-frame px that carries the reference onto this frame, or None if it does not."""
        (rt, rs), (ct, cs) = ref, cur
        if rt.shape != ct.shape:
            return None
        if self.cfg.mode == "still":
            return (0.0, 0.0) if float(np.abs(ct - rt).mean()) <= self.cfg.max_diff else None
        (dx, dy), response = cv2.phaseCorrelate(rs, cs)
        k = scale_to / rs.shape[1]
        if response < 0.2 or abs(dx) > self.cfg.max_shift * rs.shape[1] or abs(dy) > self.cfg.max_shift * rs.shape[0]:
            return None
        if _aligned_diff(rs, cs, dx, dy) > self.cfg.max_diff:
            return None
        return dx * k, dy * k

    def plan(self, frames: list[Frame]) -> list[tuple[int, float, float] | None]:
        """For each frame: None to compute it, or (batch index it reuses, dx, dy); index -1 is the last batch's reference.

        `self.motion[i]`, for a frame to compute: its (dx, dy) from the last computed frame when it matches it
        and is computed only because `max_run` ran out, else None. Stages may carry per-object results
        across that shift (the condition stage does)."""
        out, ref, ref_idx, run = [], self.ref, -1 if self.ref_result is not None else None, self.run
        self.motion = []
        for i, f in enumerate(frames):
            cur = (self.thumb(f.image), _grey(f.image, _SHIFT_W) if self.cfg.mode == "motion" else None)
            shift = None
            if ref is not None and ref_idx is not None:
                shift = self._match(ref, cur, f.image.shape[1])
            if shift is not None and run < self.cfg.max_run:
                out.append((ref_idx, *shift))
                self.motion.append(None)
                run += 1
            else:
                out.append(None)
                self.motion.append(shift)
                ref, ref_idx, run = cur, i, 0
        self.ref, self.run = ref, run
        return out

    def fill(self, frames: list[Frame], plan: list, computed: dict[int, FrameResult]) -> list[FrameResult]:
        results = []
        for i, (f, src) in enumerate(zip(frames, plan)):
            if src is None:
                results.append(computed[i])
            else:
                idx, dx, dy = src
                results.append(shift_result(self.ref_result if idx == -1 else computed[idx], f, dx, dy))
                self.reused += 1
        last_ref = next((computed[i] for i in range(len(plan) - 1, -1, -1) if plan[i] is None), None)
        if last_ref is not None:
            self.ref_result = last_ref
        return results

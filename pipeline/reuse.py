"""Frame reuse: a near-duplicate frame takes the last computed frame's results instead of running the stages.

The gate compares a small grey thumbnail with that of the last *computed* frame (not the previous
frame), so slow drift adds up and forces a recompute; `max_run` bounds how stale results can get.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core import Frame, FrameResult


class ReuseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    max_diff: float = Field(1.5, ge=0, description="mean absolute grey-level change (0-255) on a 64 px thumbnail")
    max_run: int = Field(5, ge=1, description="at most this many frames in a row reuse one result")


class FrameGate:
    def __init__(self, cfg: ReuseConfig):
        self.cfg = cfg
        self.ref_thumb: np.ndarray | None = None
        self.ref_result: FrameResult | None = None
        self.run = 0
        self.reused = 0

    @staticmethod
    def thumb(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
        return cv2.resize(g, (64, max(1, round(64 * h / w))), interpolation=cv2.INTER_AREA).astype(np.int16)

    def plan(self, frames: list[Frame]) -> list[int | None]:
        """For each frame: None to compute it, or the batch index it reuses (-1: the last batch's reference)."""
        out, ref_thumb, ref_idx, run = [], self.ref_thumb, -1 if self.ref_result is not None else None, self.run
        for i, f in enumerate(frames):
            t = self.thumb(f.image)
            same = ref_thumb is not None and ref_thumb.shape == t.shape and \
                float(np.abs(t - ref_thumb).mean()) <= self.cfg.max_diff and run < self.cfg.max_run
            if same and ref_idx is not None:
                out.append(ref_idx)
                run += 1
            else:
                out.append(None)
                ref_thumb, ref_idx, run = t, i, 0
        self.ref_thumb, self.run = ref_thumb, run
        return out

    def fill(self, frames: list[Frame], plan: list[int | None], computed: dict[int, FrameResult]) -> list[FrameResult]:
        results = []
        for i, (f, src) in enumerate(zip(frames, plan)):
            if src is None:
                results.append(computed[i])
            else:
                ref = self.ref_result if src == -1 else computed[src]
                results.append(replace(ref, frame=f, reused=True))
                self.reused += 1
        last_ref = next((computed[i] for i in range(len(plan) - 1, -1, -1) if plan[i] is None), None)
        if last_ref is not None:
            self.ref_result = last_ref
        return results

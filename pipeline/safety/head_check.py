"""A second look at each `no_hat` call: does the head itself look bare?

The hat check's mirror. On real photos most wrong `no_hat` calls fall on a hatted head whose hat the
detector missed, or on something that is not a bare head at all; a bare head shows skin and hair where a
hatted one shows a bright, smooth dome. A small gradient-boosted classifier (scikit-learn) reads the colour
statistics of the head box and of its upper half (`pipeline/safety/colour.py`), and a `no_hat` call on a
head it scores as hatted becomes `unknown`: the check can take a violation back, never raise one, so a
head without a hat box is never called `worn` (the rule's point-in-hat-box test stays the only way to
`worn`). It is trained on the labelled heads of the real Hard Hat Workers train split (`dvc repro
train_head_check`), so it does not depend on the detector. Stored with skops, as the hat check is.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.safety.colour import HEAD, head_colour
from pipeline.safety.core import Decision
from pipeline.safety.hat_check import load_check, scored

TASK = "head_check"
FEATURES = HEAD


class HeadCheck:
    def __init__(self, path: str | Path, threshold: float):
        obj = load_check(path, TASK, FEATURES, "head_check", "train_head_check")
        self.model, self.info, self.threshold, self.n_taken_back = obj["model"], obj.get("info", {}), threshold, 0

    @classmethod
    def fitted(cls, model, threshold: float) -> HeadCheck:
        """A check around a classifier fitted in memory (cross-validation in benchmarks/safety_photos_cv.py)."""
        check = cls.__new__(cls)
        check.model, check.info, check.threshold, check.n_taken_back = model, {}, threshold, 0
        return check

    def take_back(self, decisions: list[Decision], image: np.ndarray) -> list[Decision]:
        """`no_hat` calls on a head the classifier scores as hatted (at or above the threshold) become `unknown`."""
        out = list(decisions)
        for i, q in scored(self.model, decisions, "no_hat", lambda d: head_colour(image, d.head.region)):
            d = decisions[i]
            if q >= self.threshold:
                self.n_taken_back += 1
                out[i] = replace(d, status="unknown", why={**d.why, "rule": f"the head looks hatted (head check {q:.2f} >= "
                                                       f"{self.threshold})", "no_hat_rule": d.why.get("rule"), "head_check": round(float(q), 3)})
            else:
                out[i] = replace(d, why={**d.why, "head_check": round(float(q), 3)})
        return out

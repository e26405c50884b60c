"""A second look at each hat the rule accepted: does the box hold a hard hat, or dark hair?

On real photos the detector's commonest wearer mistake is a bare head whose hair it boxed as a hat,
faintly (confidence 0.1-0.4). A hard hat is bright and smooth; hair is dark and uneven. A small
gradient-boosted classifier (scikit-learn) reads the colour statistics of the hat box and of the head
under it (`pipeline/safety/colour.py`) and the detector's scores, and a `worn` call it doubts becomes
`no_hat`. It is trained beside one detector at one input size (`dvc repro train_hat_check`), on the real
Hard Hat Workers train split, and checks that it runs beside the same detector. Stored with skops: only
scikit-learn and numpy types are built from the file.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.errors import WeightsError
from pipeline.safety.colour import HEAD, STATS, box_colour, head_colour
from pipeline.safety.core import Decision

TASK = "hat_check"
# The hat box's colours and score, and the colours and scores of the head it sits on: a bare head's hair boxed
# as a hat still shows skin below it, and a faint head box often holds no worker at all.
FEATURES = STATS + ("hat_score",) + HEAD + ("head_score", "head_point_conf")


def worn_features(image: np.ndarray, d: Decision) -> np.ndarray | None:
    """FEATURES of one `worn` call on a BGR image; None when its hat or head box holds no pixels."""
    hat, head = box_colour(image, d.hat_box), head_colour(image, d.head.region)
    if hat is None or head is None:
        return None
    return np.concatenate([hat, [d.hat_score], head, [d.head.score, d.head.point_conf]])


def fingerprint(detector) -> dict:
    """What a check records of the safety_detector stage it was trained beside, and compares when it runs."""
    from pipeline.models.checkpoint import file_sha

    tta = detector.cfg.tta.model_dump() if getattr(detector.cfg, "tta", None) is not None else None
    return {"weights": detector.cfg.model.name, "sha": file_sha(detector.cfg.model), "imgsz": detector.cfg.imgsz, "tta": tta}


def same_detector(a: dict, b: dict) -> bool:
    """Two fingerprints score hats alike: same weights, input size and test-time passes (files made before
    `tta` existed record none)."""
    return (a["sha"], a["imgsz"], a.get("tta")) == (b["sha"], b["imgsz"], b.get("tta"))


def describe(f: dict) -> str:
    return f"{f['weights']} ({f['sha']}) at {f['imgsz']} px" + (f" with tta {f['tta']}" if f.get("tta") else "")


def save(path: str | Path, model, detector: dict, info: dict, task: str = TASK, features: tuple[str, ...] = FEATURES) -> None:
    from pipeline.screen.detector import dumps

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(dumps({"task": task, "features": list(features), "detector": detector, "info": info, "model": model}))
    os.replace(tmp, path)


def load_check(path: str | Path, task: str, features: tuple[str, ...], key: str, stage: str) -> dict:
    """A check file's contents ({task, features, model, ...}), with one clear error for each way it can be wrong."""
    from pipeline.screen.detector import loads

    fix = f"point `{key}:` at a file made by `dvc repro {stage}`, or remove the key"
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{task.replace('_', ' ')} file {path} does not exist", fix)
    try:
        obj = loads(path.read_bytes(), str(path), fix)
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"cannot read {task.replace('_', ' ')} file {path}: {e.__class__.__name__}: {str(e)[:200]}", fix) from e
    if not isinstance(obj, dict) or obj.get("task") != task:
        got = obj.get("task") if isinstance(obj, dict) else type(obj).__name__
        raise WeightsError(f"{path} is not a {task.replace('_', ' ')} (task {got!r})", fix)
    if obj.get("features") != list(features):
        raise WeightsError(f"{task.replace('_', ' ')} {path} reads features {obj.get('features')}, this version {list(features)}",
                           f"retrain it: `dvc repro {stage}`")
    return obj


def scored(model, decisions: list[Decision], status: str, features) -> list[tuple[int, float]]:
    """(index, the classifier's probability of class 1) of each decision with this status whose `features(d)`
    could be read, in one batch."""
    rows = [(i, features(d)) for i, d in enumerate(decisions) if d.status == status]
    rows = [(i, f) for i, f in rows if f is not None]
    if not rows:
        return []
    return list(zip([i for i, _ in rows], model.predict_proba(np.stack([f for _, f in rows]))[:, 1]))


class HatCheck:
    def __init__(self, path: str | Path, threshold: float):
        obj = load_check(path, TASK, FEATURES, "hat_check", "train_hat_check")
        self.model, self.detector, self.info = obj["model"], obj["detector"], obj.get("info", {})
        self.threshold = threshold
        self.n_vetoed = 0

    @classmethod
    def fitted(cls, model, threshold: float) -> HatCheck:
        """A check around a classifier fitted in memory (cross-validation in benchmarks/safety_photos_cv.py)."""
        check = cls.__new__(cls)
        check.model, check.detector, check.info, check.threshold, check.n_vetoed = model, {}, {}, threshold, 0
        return check

    def veto(self, decisions: list[Decision], image: np.ndarray) -> list[Decision]:
        """`worn` calls whose hat box and head the classifier scores below the threshold become `no_hat`."""
        out = list(decisions)
        for i, q in scored(self.model, decisions, "worn", lambda d: worn_features(image, d)):
            if q < self.threshold:
                d = decisions[i]
                self.n_vetoed += 1
                # faint_hat_conf ranks the violation: a hat the check all but ruled out leaves a surer no_hat
                out[i] = replace(d, status="no_hat", hat_box=None, hat_score=None, why={
                    "rule": f"the hat box and the head under it do not look like a worn hard hat "
                            f"(hat check {q:.2f} < {self.threshold})",
                    "hat": [round(float(v), 1) for v in d.hat_box], "hat_conf": round(float(d.hat_score), 3),
                    "hat_check": round(float(q), 3), "faint_hat_conf": round(float(q), 3), "candidates": []})
            else:
                out[i] = replace(decisions[i], why={**decisions[i].why, "hat_check": round(float(q), 3)})
        return out

"""What `inspectflow predict` writes per image: masks as PNG files, everything else as one JSON line.

A mask output is a PNG named after the image, pixel value = class id (in a folder named after the
output when the chain makes more than one mask). Boxes, points, decisions and components go into
`predictions.jsonl`, one line per image, keyed by the output's name.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.core import FrameResult
from pipeline.errors import ConfigError
from pipeline.safety.core import call_score

MASKS = ("damage_mask", "component_mask")


def _r(v, nd: int = 1):
    return None if v is None else [round(float(x), nd) for x in v]


def detections_json(d) -> list[dict]:
    """Each box with its class, score and, where the class has one, its head point."""
    out = []
    for i in range(len(d)):
        name = d.names[int(d.class_id[i])]
        row = {"class": name, "score": round(float(d.confidence[i]), 4), "box": _r(d.xyxy[i])}
        # a pose model gives every box a point; a hat's is meaningless
        if name != "hardhat" and np.isfinite(d.keypoints[i]).all():
            row["head"] = _r(d.keypoints[i])
            row["head_conf"] = round(float(d.keypoint_confidence[i]), 4)
        if d.tracker_id[i] >= 0:
            row["track_id"] = int(d.tracker_id[i])
        out.append(row)
    return out


def mask_counts(mask: np.ndarray, classes) -> dict[str, int]:
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    return {classes[i]: int(v) for i, v in enumerate(counts[: len(classes)]) if v}


WRITERS = {
    "detections": detections_json,
    "decisions": lambda v: [x.to_json() for x in v],
    "components": lambda v: [c.to_json() for c in v],
    "screen": lambda v: v,
}


def check_outputs(outputs: list[str]) -> None:
    """Before any image is read: every output of the chain must have a writer."""
    missing = [o for o in outputs if o not in MASKS and o not in WRITERS]
    if missing:
        raise ConfigError(f"predict has no writer for the stage outputs {missing}",
                          "add one to WRITERS in pipeline/predictions.py, or run the stage inside a flow")


def record(r: FrameResult, outputs: list[str], classes: dict[str, list[str]]) -> dict:
    """The JSON line for one image: the chain's outputs, masks as their class pixel counts."""
    line: dict = {"image": r.frame.source}
    for name in outputs:
        v = getattr(r, name)
        line[name] = {"pixels": mask_counts(v, classes[name])} if name in MASKS else WRITERS[name](v)
    return line


def output_stems(files: list[Path]) -> dict[str, str]:
    """The name each image's mask and drawing take: its stem, unless two images share one (a.jpg beside a.png,
    or x/a.jpg and y/a.jpg from a glob); those keep their extension and the folders below their common one,
    joined by '__' (a.png, x__a.jpg), so no image's output overwrites another's."""
    shared = Counter(Path(f).stem for f in files)
    root = os.path.commonpath([str(Path(f).parent.resolve()) for f in files]) if files else ""
    return {str(f): Path(f).stem if shared[Path(f).stem] == 1
            else os.path.relpath(Path(f).resolve(), root).replace(os.sep, "__") for f in files}


def decision_counts(records: list[dict]) -> Counter:
    """Hard-hat decisions per status over these JSON lines."""
    return Counter(d["status"] for rec in records for d in rec.get("decisions", []))


def review_page(records: list[dict]) -> str:
    """`predict --annotate`'s index.html beside the drawn images: images with a no_hat call first, the
    surest call first, so a reviewer starts where a violation is likeliest."""
    def surest_no_hat(rec):
        return max((call_score(d) for d in rec.get("decisions", []) if d["status"] == "no_hat"), default=-1.0)

    cards = []
    for rec in sorted(records, key=surest_no_hat, reverse=True):
        name = Path(rec["image"]).name + (f" frame {rec['frame']}" if "frame" in rec else "")
        facts = []
        if "decisions" in rec:
            counts = sorted(decision_counts([rec]).items())
            facts.append(", ".join(f"{n} {k}" for k, n in counts) or "no heads")
        for o in MASKS:
            if o in rec:
                px = rec[o]["pixels"]
                facts.append(f"{o}: " + (", ".join(f"{k} {v}" for k, v in px.items() if k != "background") or "nothing"))
        cards.append(f'<figure><img src="{html.escape(Path(rec["drawn"]).name)}" loading="lazy"><figcaption>'
                     f'<b>{html.escape(name)}</b><br>{html.escape("; ".join(facts))}</figcaption></figure>')
    return ("<!doctype html><meta charset=utf-8><title>inspectflow predict</title><style>body{font-family:sans-serif}"
            "figure{display:inline-block;margin:6px;vertical-align:top}img{max-width:420px;display:block}</style>"
            f"<h1>{len(records)} images</h1><p>Images with a no_hat call come first, the surest call first.</p>"
            + "".join(cards))

"""Clean score tables for a screen whose target runs at another precision (8-bit ONNX graphs).

A screen turns a raw score into the share of held-out clean inputs it exceeds. Those clean inputs
were scored on the float model's activations; an 8-bit model's differ a little, and its clean
frames score higher (on a clean synthetic pass, half over intact wall, the damage screen flagged
6 frames of 300 with the 8-bit segmenter, 1 in float). The autoencoders and detectors stay as
trained; only the table is taken again, from the same clean inputs run through the 8-bit graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.errors import WeightsError
from pipeline.models import checkpoint

TASK = "screen_calibration"


def save(path: str | Path, precision: str, clean: dict[int, np.ndarray], screen_path: str | Path, target: dict) -> None:
    checkpoint.write(path, {"task": TASK, "precision": precision, "target": target,
                            "screen": {"weights": Path(screen_path).name, "sha": checkpoint.file_sha(screen_path)},
                            "clean": {int(d): torch.from_numpy(v) for d, v in clean.items()}})


def load(path: str | Path, screen_path: str | Path, target: dict) -> tuple[str, dict[int, np.ndarray]]:
    """(precision, table); the file must belong to this screen and these target weights."""
    fix = "run `dvc repro calibrate_screen`, or set the screened stage's `precision: fp32`"
    ckpt = checkpoint.read_task(path, TASK, "screen calibration", fix,
                                "point `int8_calibration:` at a calibration file (data/weights/screen_*.int8.pt)")
    if ckpt["screen"]["sha"] != checkpoint.file_sha(screen_path) or ckpt["target"].get("sha") != target.get("sha"):
        raise WeightsError(f"screen calibration {path} was taken for {ckpt['screen']['weights']} ({ckpt['screen']['sha']}) "
                           f"on {ckpt['target'].get('weights')} ({ckpt['target'].get('sha')}), not for this screen and "
                           f"{target.get('weights')} ({target.get('sha')})", fix)
    return ckpt["precision"], {int(d): t.numpy() for d, t in ckpt["clean"].items()}

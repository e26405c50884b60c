"""Clean score tables for the screens whose target runs as an 8-bit graph (DVC `calibrate_screen`).

    python -m pipeline.train.screen_int8 params.yaml calibrate_screen

The clean inputs are those `train_screen` took the float table from (the calibration half of the
validation split, same seed), now run through the target's 8-bit ONNX graph; the screen itself is
not retrained. Its float table is recomputed alongside, in torch, and printed against the shipped
one: equal when `data/synth` is the data the screen was trained on."""

from __future__ import annotations

import sys

import numpy as np

from pipeline.config import load_yaml
from pipeline.models.onnx import FIXED_AFTER
from pipeline.screen import calibration
from pipeline.screen.model import ScreenModel
from pipeline.screen.targets import CONFIGS, Target, fingerprint, full_depth
from pipeline.screen.train import clean_table, collect, split
from pipeline.train.common import load_params, setup


def int8_calls(kind: str, layers: list[str], images: np.ndarray, target: Target, grid: int) -> list[dict]:
    from stages import load_stage

    stage = load_stage({**load_yaml(CONFIGS[kind]), "runtime": "onnxruntime", "precision": "int8"}, CONFIGS[kind].parent)
    batches = list(target.tensors(images))
    # a size runs its 8-bit graph from its FIXED_AFTER-th call on: the first calls warm it up and are left out
    warm = [batches[0][:1]] * (FIXED_AFTER - 1)
    calls = collect(stage.model, layers, stage.model, warm + batches, grid, f"{kind} val, 8-bit")[len(warm):]
    if any(c["precision"] != "int8" for c in calls):
        raise RuntimeError(f"some {kind} validation inputs did not run through the 8-bit graph "
                           f"(sizes {sorted({tuple(b.shape[2:]) for b in batches})})")
    return calls


def calibrate(kind: str, t: dict, trained: dict) -> None:
    screen = ScreenModel.load(t["screen"])
    target = Target(kind)
    if fingerprint(target.stage) != screen.target:
        raise SystemExit(f"{t['screen']} was trained on {screen.target}, not on the shipped {kind} weights: "
                         "run `dvc repro train_screen` first")
    tt = trained["targets"][kind]
    seed, grid = trained["seed"], trained.get("grid", 8)
    images = target.images("val", tt.get("val"), seed)
    with full_depth(target.model):
        float_calls = collect(target.model, screen.layers, target.run, target.tensors(images), grid, f"{kind} val, float")
    again = clean_table(screen, [split(float_calls, screen.layers, seed)[1]])
    diff = max(float(np.abs(again[d] - screen.clean[d]).max()) if len(again[d]) == len(screen.clean[d]) else np.inf
               for d in screen.clean)
    print(f"{kind}: float table recomputed, largest difference from the shipped one {diff:.3g}")
    table = clean_table(screen, [split(int8_calls(kind, screen.layers, images, target, grid), screen.layers, seed)[1]])
    d = max(table)
    print(f"{kind}: 8-bit clean scores, deepest layer: median {np.median(table[d]):.4g} against {np.median(screen.clean[d]):.4g} "
          f"in float ({len(table[d])} inputs)")
    calibration.save(t["out"], "int8", table, t["screen"], screen.target)


def main(p: dict, trained: dict) -> None:
    setup(trained["seed"])
    for kind, t in p["targets"].items():
        calibrate(kind, t, trained)


if __name__ == "__main__":
    main(load_params(sys.argv[1], sys.argv[2]), load_params(sys.argv[1], "train_screen"))

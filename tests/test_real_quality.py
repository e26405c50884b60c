"""The shipped weights and configs, run through the CLI as a user runs them, on held-out real photos.

Floors sit a few points under what the shipped weights score (README), so a weights file, config or
pre-processing change that loses real-world quality fails here (the drone-frame damage weights score
0.29 crack IoU on UAV75 val; the flow's hat rule on photos misses 36% of heads). Skipped without
../shared/data/real.
"""

from __future__ import annotations

import cv2
import pytest

from pipeline.safety.metrics import real_gt
from pipeline.safety.metrics import evaluate, from_predictions
from pipeline.train.seg_data import crack_uav75
from tests.conftest import ROOT, run_cli

REAL = ROOT.parent / "shared" / "data" / "real"
CONFIGS = ROOT / "stages" / "configs"


@pytest.mark.skipif(not (REAL / "cracks_uav75").exists(), reason="real crack photos not present")
def test_closeup_config_finds_real_drone_cracks(tmp_path):
    """UAV75 val (drone close-ups of concrete, never trained on): pooled crack IoU of the PNG masks
    `predict` writes; formwork joints (204 in the labels) count as background. Shipped: 0.414."""
    src = REAL / "cracks_uav75" / "val_img"
    r = run_cli("predict", CONFIGS / "damage_closeup.yaml", "--source", src, "--out", tmp_path / "masks")
    assert r.returncode == 0, r.stderr[-2000:]
    inter = union = 0
    for img in sorted(src.glob("*.jpg")):
        pred = cv2.imread(str(tmp_path / "masks" / f"{img.stem}.png"), cv2.IMREAD_UNCHANGED) == 1
        gt = crack_uav75(cv2.imread(str(REAL / "cracks_uav75" / "val_lab" / f"{img.stem}.png"), cv2.IMREAD_UNCHANGED)) > 0
        inter, union = inter + int((pred & gt).sum()), union + int((pred | gt).sum())
    assert inter / union >= 0.38, f"UAV75 val crack IoU {inter / union:.3f}"


@pytest.mark.skipif(not (REAL / "hardhat_workers").exists(), reason="real hard-hat photos not present")
def test_photo_configs_tell_wearers_from_bare_heads(tmp_path):
    """Hard Hat Workers val (50 photos, never trained on) through `predict safety_photos.yaml
    hardhat_rule_photos.yaml` at their shipped thresholds: wearer and non-wearer AP of the decisions it
    writes, each head point matched to the labelled head box that holds it. Shipped: 69.8 / 73.5, 17.3% of heads
    missed, F1 0.77 / 0.77; with one detector pass instead of three (its own check) 70.2 / 69.3 / 22.3%; one pass without the hat
    check 69.5 / 52.4, and without reading mirror-padded borders either 62.3 / 46.0 / 25.9%."""
    images, gts = real_gt(REAL / "hardhat_workers")
    r = run_cli("predict", CONFIGS / "safety_photos.yaml", CONFIGS / "hardhat_rule_photos.yaml", "--source",
                images[0].parent, "--out", tmp_path / "pred")
    assert r.returncode == 0, r.stderr[-2000:]
    m = evaluate(from_predictions(tmp_path / "pred" / "predictions.jsonl"), gts)
    got = {c: round(100 * m[c]["AP"], 1) for c in ("wearer", "non_wearer")} | {"missed": round(m["head_miss_rate"], 3)}
    assert got["wearer"] >= 64 and got["non_wearer"] >= 60 and got["missed"] <= 0.21, got
    # no_hat calls on heads that look hatted, or below no_hat_min_score, are written as unknown: F1 0.44 without
    # either, 0.73 with the cut alone, 0.75 with the head check, 0.77 shipped (hat check reading the head too)
    assert m["non_wearer"]["F1"] >= 0.7 and m["wearer"]["F1"] >= 0.72, m
    assert "too faint to call:" in r.stdout and "head check:" in r.stdout, r.stdout
    # what the photo rule's extras did, as `predict` says it
    assert f"mirror-padded borders on 50 of {len(images)} images" in r.stdout and "worn calls became no_hat" in r.stdout, r.stdout
    assert "test-time passes: 3 per image" in r.stdout, r.stdout

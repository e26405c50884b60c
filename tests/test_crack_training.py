"""The real-crack fine-tune: per-image Dice, per-set sampling shares, and UAV75 joints as hard negatives."""

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.train import segmentation
from pipeline.train.seg_data import EVAL_SETS, HARD_NEGATIVE, read_pair, real_crack_pairs
from pipeline.train.segmentation import per_image_dice, training_set


def test_per_image_dice_counts_a_missed_hairline_as_much_as_a_found_wide_crack():
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[0, :, 8:24] = 1          # a wide crack
    y[1, :, 16] = 1            # a hairline
    logits = torch.full((2, 2, 32, 32), -10.0)
    logits[:, 0] = 10.0
    logits[0, 1, :, 8:24], logits[0, 0, :, 8:24] = 10.0, -10.0   # the wide one found, the hairline missed
    batch = segmentation.smp.losses.DiceLoss("multiclass", from_logits=True, classes=[1])(logits, y)
    assert batch.item() < 0.1                      # batch-wide: the hairline barely registers
    assert per_image_dice(logits, y).item() == pytest.approx(0.5, abs=0.03)   # +1 smoothing


def test_per_image_dice_ignores_images_without_the_class():
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    loss = per_image_dice(logits, y)
    loss.backward()
    assert loss.item() == 0 and logits.grad is not None


def _fake_real(root: Path) -> Path:
    """The layout of ../shared/data/real's crack sets, with a few drawn images each."""
    rng = np.random.default_rng(0)

    def img(h, w):
        return rng.integers(100, 200, (h, w, 3), dtype=np.uint8)

    u = root / "cracks_uav75"
    for split, n in (("train", 4), ("val", 2)):
        (u / f"{split}_img").mkdir(parents=True)
        (u / f"{split}_lab").mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(u / f"{split}_img" / f"u{i}.jpg"), img(64, 64))
            lab = np.zeros((64, 64, 4), np.uint8)
            lab[:, 20:22] = 255       # crack
            lab[:, 40:43] = 204       # formwork joint
            cv2.imwrite(str(u / f"{split}_lab" / f"u{i}.png"), lab)
    d = root / "cracks_deepcrack"
    (d / "train_img").mkdir(parents=True)
    (d / "train_lab").mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(d / "train_img" / f"d{i}.jpg"), img(64, 96))
        m = np.zeros((64, 96), np.uint8)
        m[30:34] = 255
        cv2.imwrite(str(d / "train_lab" / f"d{i}.png"), m)
    m_ = root / "cracks_masonry"
    (m_ / "images").mkdir(parents=True)
    (m_ / "masks").mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(m_ / "images" / f"m{i}.png"), img(48, 48))
        cv2.imwrite(str(m_ / "masks" / f"m{i}.png"), np.zeros((48, 48), np.uint8))
    return root


def test_joints_are_hard_negatives_in_training_and_background_in_evaluation(tmp_path):
    real = _fake_real(tmp_path / "real")
    sets = real_crack_pairs(real, {"deepcrack": 2, "masonry": 2}, hard_negatives=True)
    _, m = read_pair(*sets["train_uav75"][0])
    assert set(np.unique(m)) == {0, 1, HARD_NEGATIVE} and (m[:, 40:43] == HARD_NEGATIVE).all()
    _, m = read_pair(*sets["uav75_val"][0])
    assert set(np.unique(m)) == {0, 1}
    assert [len(sets[k]) for k in EVAL_SETS] == [2, 2, 2]
    assert len(sets["train"]) == 4 + 4 + 4
    _, m = read_pair(*real_crack_pairs(real, {})["train_uav75"][0])
    assert set(np.unique(m)) == {0, 1}


def test_real_mix_draws_each_set_at_its_share(tiny, tmp_path):
    real = _fake_real(tmp_path / "real")
    p = tiny["params"]["finetune_damage"] | {"real": str(real), "holdout": {"deepcrack": 2, "masonry": 2},
                                             "real_mix": {"uav75": 0.6, "deepcrack": 0.2, "masonry": 0.1},
                                             "steps_per_epoch": 500, "batch": 4}
    ds, sampler = training_set(p, Path(p["data"]))
    bounds = np.cumsum([len(d) for d in ds.datasets])
    drawn = Counter(int(np.searchsorted(bounds, i, side="right")) for i in sampler)
    shares = [drawn[k] / len(sampler) for k in range(4)]
    assert len(sampler) == 2000
    assert shares == pytest.approx([0.1, 0.6, 0.2, 0.1], abs=0.04)
    with pytest.raises(ValueError, match="unknown crack set 'asphalt'"):
        training_set(p | {"real_mix": {"asphalt": 0.5}}, Path(p["data"]))
    with pytest.raises(ValueError, match="add up to 1.20"):
        training_set(p | {"real_mix": {"uav75": 0.7, "masonry": 0.5}}, Path(p["data"]))


def test_finetune_on_real_mix_with_hard_negatives_trains_and_keeps_the_last_epoch(tiny, tmp_path):
    real = _fake_real(tmp_path / "real")
    p = tiny["params"]["finetune_damage"] | {
        "real": str(real), "holdout": {"deepcrack": 2, "masonry": 2}, "crop": 48, "epochs": 2,
        "real_mix": {"uav75": 0.5, "deepcrack": 0.2, "masonry": 0.1}, "hard_negative_weight": 3.0,
        "dice": "per_image", "select": "last", "out": str(tmp_path / "damage.pt")}
    out = segmentation.train(p)
    saved = torch.load(p["out"], weights_only=False)
    assert [h["epoch"] for h in saved["meta"]["history"]] == [1, 2]
    assert len(out["history"]) == 2

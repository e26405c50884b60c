"""Segmentation training samples: synthetic views and the real crack sets, as (image, mask) pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.imageio import read_image
from pipeline.models.preprocess import to_tensor

MaskFn = Callable[[np.ndarray], np.ndarray]
EVAL_SETS = ("uav75_val", "deepcrack_test", "masonry_test")


def _gray(m: np.ndarray) -> np.ndarray:
    return m if m.ndim == 2 else m[..., 0]


def crack_binary(m: np.ndarray) -> np.ndarray:
    return (_gray(m) > 0).astype(np.uint8)


def crack_uav75(m: np.ndarray) -> np.ndarray:
    # 255 is a crack; 204 marks planking and formwork joints, which are not damage
    return (_gray(m) == 255).astype(np.uint8)


# a background pixel the loss weighs up: UAV75's formwork joints look like cracks and are not
HARD_NEGATIVE = 250


def crack_uav75_joints(m: np.ndarray) -> np.ndarray:
    g = _gray(m)
    out = (g == 255).astype(np.uint8)
    out[g == 204] = HARD_NEGATIVE
    return out


def identity(m: np.ndarray) -> np.ndarray:
    return _gray(m)


def synthetic_pairs(root: Path, split: str, mask_dir: str) -> list[tuple[Path, Path, MaskFn]]:
    imgs = sorted((root / "images" / split).glob("*.jpg"))
    return [(p, root / mask_dir / split / f"{p.stem}.png", identity) for p in imgs]


def real_crack_pairs(real: Path, holdout: dict, hard_negatives: bool = False) -> dict[str, list]:
    """Real crack images split into train and evaluation sets: `train` holds all three sets'
    training images, `train_<set>` each one's. Which DeepCrack and masonry images are held out
    is fixed by sorted name, so every run evaluates the same ones. With `hard_negatives`, UAV75's
    training masks mark its formwork joints as HARD_NEGATIVE; evaluation masks never do."""
    u = real / "cracks_uav75"
    uav = {split: [(p, u / f"{split}_lab" / f"{p.stem}.png", crack_uav75) for p in sorted((u / f"{split}_img").glob("*.jpg"))]
           for split in ("train", "val")}
    if hard_negatives:
        uav["train"] = [(p, m, crack_uav75_joints) for p, m, _ in uav["train"]]
    d = real / "cracks_deepcrack"
    dc = [(p, d / "train_lab" / f"{p.stem}.png", crack_binary) for p in sorted((d / "train_img").glob("*.jpg"))]
    m = real / "cracks_masonry"
    ms = [(p, m / "masks" / p.name, crack_binary) for p in sorted((m / "images").glob("*.png"))]
    n_dc, n_ms = holdout.get("deepcrack", 50), holdout.get("masonry", 40)
    out = {"train_uav75": uav["train"], "train_deepcrack": dc[:-n_dc], "train_masonry": ms[:-n_ms],
           "uav75_val": uav["val"], "deepcrack_test": dc[-n_dc:], "masonry_test": ms[-n_ms:]}
    out["train"] = out["train_uav75"] + out["train_deepcrack"] + out["train_masonry"]
    return out


def read_pair(img_path, mask_path, fn: MaskFn) -> tuple[np.ndarray, np.ndarray]:
    img = read_image(img_path)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if img is None or mask is None:
        raise FileNotFoundError(f"unreadable training pair {img_path} / {mask_path}")
    mask = fn(mask)
    if mask.shape[:2] != img.shape[:2]:
        mask = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    return img, mask


class SegDataset(Dataset):
    def __init__(self, pairs, crop: int, scale: float = 1.0, train: bool = True, vflip: bool = False):
        self.pairs, self.scale = pairs, scale
        geo = [A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_REFLECT_101)]
        if train:
            # vertical flips suit close-up surfaces (cracks have no up); facade views keep their sky on top
            geo += [A.RandomCrop(crop, crop), A.HorizontalFlip(), *([A.VerticalFlip()] if vflip else []),
                    A.Affine(rotate=(-10, 10), scale=(0.8, 1.25), p=0.5),
                    A.RandomBrightnessContrast(0.2, 0.2, p=0.5)]
        else:
            geo += [A.CenterCrop(crop, crop)]
        self.aug = A.Compose(geo)

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        img, mask = read_pair(*self.pairs[i])
        if self.scale != 1.0:
            img = cv2.resize(img, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
        s = self.aug(image=img, mask=mask)
        return to_tensor(s["image"])[0], torch.from_numpy(s["mask"].astype(np.int64))

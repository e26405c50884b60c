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


def _gray(m: np.ndarray) -> np.ndarray:
    return m if m.ndim == 2 else m[..., 0]


def crack_binary(m: np.ndarray) -> np.ndarray:
    return (_gray(m) > 0).astype(np.uint8)


def crack_uav75(m: np.ndarray) -> np.ndarray:
    # 255 is a crack; 204 marks planking and formwork joints, which are not damage
    return (_gray(m) == 255).astype(np.uint8)


def identity(m: np.ndarray) -> np.ndarray:
    return _gray(m)


def synthetic_pairs(root: Path, split: str, mask_dir: str) -> list[tuple[Path, Path, MaskFn]]:
    imgs = sorted((root / "images" / split).glob("*.jpg"))
    return [(p, root / mask_dir / split / f"{p.stem}.png", identity) for p in imgs]


def real_crack_pairs(real: Path, holdout: dict) -> dict[str, list]:
    """Real crack images split into train and evaluation sets. Which DeepCrack and masonry
    images are held out is fixed by sorted name, so every run evaluates the same ones."""
    out = {"train": [], "uav75_val": [], "deepcrack_test": [], "masonry_test": []}
    u = real / "cracks_uav75"
    for split, key in (("train", "train"), ("val", "uav75_val")):
        for p in sorted((u / f"{split}_img").glob("*.jpg")):
            out[key].append((p, u / f"{split}_lab" / f"{p.stem}.png", crack_uav75))
    d = real / "cracks_deepcrack"
    dc = [(p, d / "train_lab" / f"{p.stem}.png", crack_binary) for p in sorted((d / "train_img").glob("*.jpg"))]
    n = holdout.get("deepcrack", 50)
    out["train"] += dc[:-n]
    out["deepcrack_test"] = dc[-n:]
    m = real / "cracks_masonry"
    ms = [(p, m / "masks" / p.name, crack_binary) for p in sorted((m / "images").glob("*.png"))]
    n = holdout.get("masonry", 40)
    out["train"] += ms[:-n]
    out["masonry_test"] = ms[-n:]
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
    def __init__(self, pairs, crop: int, scale: float = 1.0, train: bool = True):
        self.pairs, self.scale = pairs, scale
        geo = [A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_REFLECT_101)]
        if train:
            geo += [A.RandomCrop(crop, crop), A.HorizontalFlip(), A.Affine(rotate=(-10, 10), scale=(0.8, 1.25), p=0.5),
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

"""Reading images of any depth and channel count into 8-bit BGR."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """Greyscale, RGBA and 16-bit or float images become HxWx3 uint8."""
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        scale = 255.0 if img.max(initial=0) <= 1.0 else 1.0
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise SourceError(f"unsupported image dtype {img.dtype}", "convert the image to 8- or 16-bit")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return img


def read_image(path: str | Path) -> np.ndarray | None:
    """The image as 8-bit BGR, or None if the file is not a readable image."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if img is None else to_bgr8(img)

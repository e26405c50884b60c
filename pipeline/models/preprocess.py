"""The one image-to-tensor conversion used by training and by the stages."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images_bgr: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """BGR uint8 HxWx3 images (same size) -> float NCHW RGB tensor, roughly zero-centred."""
    arr = np.stack(images_bgr) if isinstance(images_bgr, list) else images_bgr
    if arr.ndim == 3:
        arr = arr[None]
    t = torch.from_numpy(np.ascontiguousarray(arr[..., ::-1])).permute(0, 3, 1, 2).float()
    return t.div_(255.0).sub_(0.5).div_(0.25)

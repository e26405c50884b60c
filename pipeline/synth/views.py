"""Drone-like views of a facade: a perspective camera looking at part of it, plus photometric noise."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from pipeline.synth.facade import Facade


def photometric(strength: float = 1.0) -> A.Compose:
    """Lighting, blur and sensor noise as seen from a drone; image only, masks untouched."""
    p = min(1.0, 0.5 * strength)
    return A.Compose([
        A.RandomBrightnessContrast(0.25, 0.25, p=p),
        A.RandomGamma((70, 140), p=p),
        A.HueSaturationValue(8, 20, 15, p=p),
        A.OneOf([A.MotionBlur(blur_limit=(3, 7)), A.GaussianBlur(blur_limit=(3, 5))], p=0.3 * strength),
        A.GaussNoise(std_range=(0.01, 0.05), p=p),
        A.ImageCompression(quality_range=(60, 95), p=0.3 * strength),
    ])


def camera_homography(center, view_wh, out_wh, tilt: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Homography from output pixels to facade pixels, for a camera centred on `center` that sees
    a `view_wh` patch, with corners jittered by up to `tilt` of the patch size (oblique views)."""
    (cx, cy), (vw, vh), (ow, oh) = center, view_wh, out_wh
    quad = np.float32([[cx - vw / 2, cy - vh / 2], [cx + vw / 2, cy - vh / 2], [cx + vw / 2, cy + vh / 2], [cx - vw / 2, cy + vh / 2]])
    if rng is not None and tilt > 0:
        quad += rng.uniform(-tilt, tilt, (4, 2)).astype(np.float32) * np.float32([vw, vh])
    out = np.float32([[0, 0], [ow, 0], [ow, oh], [0, oh]])
    return cv2.getPerspectiveTransform(out, quad)


def render(f: Facade, H: np.ndarray, out_wh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image, component mask, instance map and damage mask as the camera sees them."""
    flags = cv2.WARP_INVERSE_MAP
    img = cv2.warpPerspective(f.image, H, out_wh, flags=cv2.INTER_AREA | flags, borderMode=cv2.BORDER_REFLECT)
    nearest = dict(flags=cv2.INTER_NEAREST | flags, borderMode=cv2.BORDER_REFLECT)
    comp = cv2.warpPerspective(f.components, H, out_wh, **nearest)
    # int32 instance ids do not survive warpPerspective; float32 holds them exactly below 2**24
    inst = cv2.warpPerspective(f.instances.astype(np.float32), H, out_wh, **nearest).astype(np.int32)
    dmg = cv2.warpPerspective(f.damage, H, out_wh, **nearest)
    return img, comp, inst, dmg


def random_view(rng, f: Facade, size: int | tuple[int, int], scale_range=(0.55, 1.3), tilt=0.08):
    """A view at a random place, scale and obliqueness: `size` px square, or (w, h)."""
    fh, fw = f.components.shape
    w, h = (size, size) if isinstance(size, int) else size
    s = rng.uniform(*scale_range)
    vw, vh = w / s, h / s
    cx, cy = rng.uniform(vw / 2, max(fw - vw / 2, vw / 2 + 1)), rng.uniform(vh / 3, max(fh - vh / 3, vh / 3 + 1))
    H = camera_homography((cx, cy), (vw, vh), (w, h), tilt, rng)
    return render(f, H, (w, h))

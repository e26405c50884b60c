"""Surface textures for synthetic facades, built from scikit-image's real brick and gravel photos."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=None)
def _sample(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)().astype(np.float32) / 255.0


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int = 32) -> np.ndarray:
    """Low-frequency noise in [0, 1]: stains, uneven paint, light falloff."""
    small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _tile(gray: np.ndarray, h: int, w: int, scale: float, rng) -> np.ndarray:
    g = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    reps = (h // g.shape[0] + 2, w // g.shape[1] + 2)
    big = np.tile(g, reps)
    y, x = rng.integers(0, g.shape[0]), rng.integers(0, g.shape[1])
    return big[y : y + h, x : x + w]


def _tint(gray: np.ndarray, bgr: np.ndarray, contrast: float) -> np.ndarray:
    g = 1.0 + (gray - gray.mean()) * contrast
    return np.clip(g[..., None] * bgr[None, None, :], 0, 255).astype(np.uint8)


def _color(rng, base, spread=25) -> np.ndarray:
    # mostly a brightness change, with only a slight hue shift: real materials are not neon
    shift = rng.normal(0, spread) + rng.normal(0, spread * 0.25, 3)
    return np.clip(np.asarray(base, np.float32) + shift, 20, 245)


def wall(rng, h, w) -> np.ndarray:
    kind = rng.choice(["brick", "plaster", "concrete"], p=[0.4, 0.35, 0.25])
    if kind == "brick":
        g = _tile(_sample("brick"), h, w, rng.uniform(0.35, 0.7), rng)
        return _tint(g, _color(rng, (70, 90, 160), 20), 1.6)
    g = 0.7 * smooth_noise(rng, h, w, 48) + 0.3 * rng.random((h, w)).astype(np.float32)
    base = (190, 200, 205) if kind == "plaster" else (150, 155, 155)
    return _tint(g, _color(rng, base, 30), 0.35)


def concrete(rng, h, w) -> np.ndarray:
    g = 0.6 * smooth_noise(rng, h, w, 24) + 0.4 * rng.random((h, w)).astype(np.float32)
    return _tint(g, _color(rng, (165, 168, 170), 18), 0.3)


def aggregate(rng, h, w) -> np.ndarray:
    """Exposed aggregate in a spalled patch: gravel, darker than the surface around it."""
    g = _tile(_sample("gravel"), h, w, rng.uniform(0.3, 0.6), rng)
    return _tint(g, _color(rng, (95, 105, 115), 12), 1.4)


def glass(rng, h, w) -> np.ndarray:
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    sky = _color(rng, (150, 120, 90), 30)
    dark = _color(rng, (60, 55, 50), 15)
    t = np.clip(yy * rng.uniform(0.3, 1.2) + 0.3 * smooth_noise(rng, h, w, 64), 0, 1)
    img = (1 - t)[..., None] * sky + t[..., None] * dark
    # a diagonal reflection streak, as sunlight on glass
    streak = np.abs((xx - yy * rng.uniform(0.3, 1.0)) - rng.uniform(0, 1)) < rng.uniform(0.05, 0.15)
    img = img + streak[..., None] * rng.uniform(20, 60)
    return np.clip(img, 0, 255).astype(np.uint8)


def solid(rng, h, w, base, spread=30) -> np.ndarray:
    g = 0.85 + 0.15 * smooth_noise(rng, h, w, 16)
    return _tint(g, _color(rng, base, spread), 1.0)


def sky(rng, h, w) -> np.ndarray:
    top, bottom = _color(rng, (210, 170, 130), 25), _color(rng, (235, 220, 200), 15)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to((1 - t) * top + t * bottom, (h, w, 3)).astype(np.uint8).copy()


def ground(rng, h, w) -> np.ndarray:
    g = _tile(_sample(str(rng.choice(["gravel", "grass"]))), h, w, rng.uniform(0.4, 0.8), rng)
    return _tint(g, _color(rng, (90, 110, 110), 20), 1.0)

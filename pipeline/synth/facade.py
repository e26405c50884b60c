"""Procedural multi-storey facades with per-pixel component classes and instance ids.

Layout follows a reinforced-concrete frame: slabs at each floor line, beams under them, columns
between bays, infill walls with windows, and balconies on some bays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.core import COMPONENT_CLASSES
from pipeline.synth import textures as tx

C = {name: i for i, name in enumerate(COMPONENT_CLASSES)}


@dataclass
class Facade:
    image: np.ndarray  # HxWx3 uint8 BGR
    components: np.ndarray  # HxW uint8 class ids
    instances: np.ndarray  # HxW int32, 0 = no component
    damage: np.ndarray  # HxW uint8 (see core.DAMAGE_CLASSES)
    instance_class: dict[int, int] = field(default_factory=dict)
    states: dict[int, int] = field(default_factory=dict)


class _Painter:
    def __init__(self, h: int, w: int, rng: np.random.Generator):
        self.rng = rng
        self.image = np.zeros((h, w, 3), np.uint8)
        self.components = np.zeros((h, w), np.uint8)
        self.instances = np.zeros((h, w), np.int32)
        self.instance_class: dict[int, int] = {}

    def fill(self, y0, y1, x0, x1, cls: str | None, tex: np.ndarray):
        H, W = self.components.shape
        y0, y1, x0, x1 = max(int(y0), 0), min(int(y1), H), max(int(x0), 0), min(int(x1), W)
        if y1 <= y0 or x1 <= x0:
            return
        self.image[y0:y1, x0:x1] = tex[: y1 - y0, : x1 - x0]
        if cls is None:
            return
        iid = len(self.instance_class) + 1
        self.instance_class[iid] = C[cls]
        self.components[y0:y1, x0:x1] = C[cls]
        self.instances[y0:y1, x0:x1] = iid

    def shade_below(self, y, x0, x1, depth=8, strength=0.6):
        """A soft shadow under a protruding member, for a sense of depth."""
        H = self.image.shape[0]
        y = int(y)
        for k in range(depth):
            if 0 <= y + k < H:
                f = 1 - strength * (1 - k / depth)
                row = self.image[y + k, int(x0) : int(x1)].astype(np.float32) * f
                self.image[y + k, int(x0) : int(x1)] = row.astype(np.uint8)


def generate_facade(rng: np.random.Generator, width: int, storey_px: tuple[int, int] = (190, 270)) -> Facade:
    """A facade `width` px wide; its height follows from the storey count and size."""
    storey_h = int(rng.integers(*storey_px))
    n_storeys = int(rng.integers(2, 6))
    bay_w = int(storey_h * rng.uniform(0.9, 1.5))
    sky_h = int(storey_h * rng.uniform(0.3, 0.8))
    ground_h = int(storey_h * rng.uniform(0.2, 0.5))
    height = sky_h + n_storeys * storey_h + ground_h
    p = _Painter(height, width, rng)
    p.fill(0, sky_h, 0, width, None, tx.sky(rng, sky_h, width))
    p.fill(height - ground_h, height, 0, width, None, tx.ground(rng, ground_h, width))

    slab_t = int(storey_h * rng.uniform(0.06, 0.09))
    beam_t = int(storey_h * rng.uniform(0.08, 0.13))
    col_w = int(bay_w * rng.uniform(0.08, 0.13))
    x_off = -int(rng.integers(0, bay_w))
    bays = range((width - x_off) // bay_w + 1)
    frame_color = tuple(rng.choice([(235, 235, 235), (60, 60, 65), (40, 70, 110), (150, 150, 150)]))
    has_windows = rng.random() < 0.9
    member = tx.concrete(rng, height, width)  # one pour for all frame members
    wall_tex = tx.wall(rng, height, width)

    for s in range(n_storeys):
        top = sky_h + s * storey_h
        beam_y = top + slab_t
        p.fill(top, beam_y, 0, width, "slab", member[top:])
        p.shade_below(beam_y, 0, width)
        for b in bays:
            x0 = x_off + b * bay_w
            wx0, wx1 = x0 + col_w, x0 + bay_w
            p.fill(beam_y, beam_y + beam_t, wx0, wx1, "beam", member[beam_y:, max(wx0, 0):])
            wy0, wy1 = beam_y + beam_t, top + storey_h
            p.fill(wy0, wy1, wx0, wx1, "wall", wall_tex[max(wy0, 0):, max(wx0, 0):])
            p.fill(beam_y, top + storey_h, x0, x0 + col_w, "column", member[beam_y:, max(x0, 0):])
            if has_windows and rng.random() < 0.8:
                _window(p, rng, wy0, wy1, wx0, wx1, frame_color)
            if s < n_storeys - 1 and rng.random() < 0.25:
                _balcony(p, rng, wy0, wy1, x0, x0 + bay_w)
    # the last slab closes the ground floor
    bottom = sky_h + n_storeys * storey_h
    p.fill(bottom - slab_t // 2, bottom, 0, width, "slab", member[bottom - slab_t // 2 :])
    return Facade(p.image, p.components, p.instances, np.zeros((height, width), np.uint8), p.instance_class)


def _window(p: _Painter, rng, y0, y1, x0, x1, frame_color):
    h, w = y1 - y0, x1 - x0
    ww, wh = int(w * rng.uniform(0.35, 0.65)), int(h * rng.uniform(0.45, 0.7))
    wx = x0 + int((w - ww) * rng.uniform(0.3, 0.7))
    wy = y0 + int((h - wh) * rng.uniform(0.25, 0.55))
    ft = max(4, int(min(ww, wh) * rng.uniform(0.06, 0.1)))
    p.fill(wy, wy + wh, wx, wx + ww, "window_frame", tx.solid(rng, wh, ww, frame_color, 10))
    p.fill(wy + ft, wy + wh - ft, wx + ft, wx + ww - ft, "window_pane", tx.glass(rng, wh, ww))


def _balcony(p: _Painter, rng, y0, y1, x0, x1):
    bh = int((y1 - y0) * rng.uniform(0.3, 0.4))
    inset = int((x1 - x0) * rng.uniform(0.0, 0.1))
    tex = tx.solid(rng, bh, x1 - x0, (170, 170, 175) if rng.random() < 0.6 else (120, 140, 160), 25)
    # a railing: dark vertical bars over the parapet
    if rng.random() < 0.5:
        step = int(rng.integers(10, 18))
        tex[: int(bh * 0.8), ::step] = (50, 50, 50)
    p.fill(y1 - bh, y1, x0 + inset, x1 - inset, "balcony", tex)
    p.shade_below(y1, x0 + inset, x1 - inset, depth=10)

"""Earthquake damage painted onto a facade: cracks, spalling and exposed rebar.

Each damageable component is given a target condition, damage is drawn to match it, and the
label is then *derived from the drawn masks* by `derive_state`, so labels and pixels never disagree.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import find_objects

from pipeline.core import DAMAGEABLE
from pipeline.synth import textures as tx
from pipeline.synth.facade import Facade

CRACK, SPALL, REBAR = 1, 2, 3


def derive_state(crack_px: int, spall_px: int, rebar_px: int, area_px: int) -> int:
    """IC-SHM/QuakeCity-style rule: exposed rebar or large spalling is severe, any spalling or
    extensive cracking is moderate, minor cracking is light."""
    area = max(area_px, 1)
    if rebar_px > 0 or spall_px / area > 0.06:
        return 3
    if spall_px > 0 or crack_px / area > 0.012:
        return 2
    if crack_px > 0:
        return 1
    return 0


def _crack(rng, mask: np.ndarray, start, angle: float, length: int, width: int, depth=0):
    pts, (x, y) = [start], start
    for _ in range(max(length // 6, 2)):
        angle += rng.normal(0, 0.18)
        x, y = x + 6 * np.cos(angle), y + 6 * np.sin(angle)
        pts.append((x, y))
        if depth < 2 and rng.random() < 0.04:
            _crack(rng, mask, (x, y), angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1),
                   length // 2, max(1, width - 1), depth + 1)
    cv2.polylines(mask, [np.int32(pts)], False, 1, thickness=int(width), lineType=cv2.LINE_8)


def _blob(rng, shape, cx, cy, r) -> np.ndarray:
    n = 14
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.55, 1.2, n)
    poly = np.stack([cx + rad * np.cos(ang), cy + rad * 0.8 * np.sin(ang)], 1)
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.int32(poly)], 1)
    return m


def _damage_one(rng, image: np.ndarray, damage: np.ndarray, inst_mask: np.ndarray, target: int):
    """Works on crops (views) around one component, so cost scales with the component."""
    h, w = inst_mask.shape
    y0 = x0 = 0
    shape = inst_mask.shape
    crack = np.zeros(shape, np.uint8)
    spall = np.zeros(shape, np.uint8)
    rebar = np.zeros(shape, np.uint8)
    n_cracks = {1: rng.integers(1, 3), 2: rng.integers(2, 5), 3: rng.integers(1, 4)}[target]
    for _ in range(n_cracks):
        start = (x0 + rng.uniform(0.1, 0.9) * w, y0 + rng.uniform(0.1, 0.9) * h)
        # earthquake shear cracks run diagonally; flexural ones vertically
        angle = rng.choice([np.pi / 4, 3 * np.pi / 4, np.pi / 2]) + rng.normal(0, 0.2)
        width = {1: rng.integers(1, 3), 2: rng.integers(2, 5), 3: rng.integers(2, 5)}[target]
        length = min(h, w) * rng.uniform(0.4, 1.2) if target == 1 else max(h, w) * rng.uniform(0.4, 0.9)
        _crack(rng, crack, start, angle, int(length), width)
    if target >= 2 and (target == 3 or rng.random() < 0.5):
        r = min(h, w) * (rng.uniform(0.12, 0.2) if target == 2 else rng.uniform(0.25, 0.4))
        spall = _blob(rng, shape, x0 + rng.uniform(0.3, 0.7) * w, y0 + rng.uniform(0.3, 0.7) * h, r)
        spall &= inst_mask
        if target == 3 and spall.any() and rng.random() < 0.75:
            ys, xs = np.nonzero(spall)
            horizontal = w > h
            n_bars = int(rng.integers(2, 4))
            t = int(rng.integers(3, 6))
            for k in range(n_bars):
                if horizontal:
                    yy = int(ys.min() + (k + 1) * (ys.max() - ys.min()) / (n_bars + 1))
                    cv2.line(rebar, (int(xs.min()), yy), (int(xs.max()), yy), 1, t)
                else:
                    xx = int(xs.min() + (k + 1) * (xs.max() - xs.min()) / (n_bars + 1))
                    cv2.line(rebar, (xx, int(ys.min())), (xx, int(ys.max())), 1, t)
            rebar &= spall
    crack &= inst_mask
    _render(rng, image, damage, crack, spall, rebar)


def _render(rng, img, damage, crack, spall, rebar):
    if spall.any():
        ys, xs = np.nonzero(spall)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        agg = tx.aggregate(rng, y1 - y0, x1 - x0)
        sub = spall[y0:y1, x0:x1].astype(bool)
        img[y0:y1, x0:x1][sub] = agg[sub]
        rim = cv2.dilate(spall, np.ones((5, 5), np.uint8)) & ~spall & 1
        img[rim.astype(bool)] = (img[rim.astype(bool)] * 0.6).astype(np.uint8)
        damage[spall.astype(bool)] = SPALL
    if rebar.any():
        rust = np.clip(np.array([35, 60, 105]) + rng.normal(0, 12, 3), 0, 255)
        shade = 0.7 + 0.3 * rng.random(int(rebar.sum()))
        img[rebar.astype(bool)] = (rust[None, :] * shade[:, None]).astype(np.uint8)
        damage[rebar.astype(bool)] = REBAR
    if crack.any():
        c = crack.astype(bool) & (damage == 0)
        img[c] = (img[c] * rng.uniform(0.15, 0.4)).astype(np.uint8)
        damage[c] = CRACK


def add_damage(rng: np.random.Generator, f: Facade, p_state=(0.4, 0.25, 0.2, 0.15),
               intact_x: list[tuple[int, int]] = ()) -> Facade:
    """Paint damage on every damageable component and record each component's state. Components
    whose centre lies in an `intact_x` span (facade px) are left undamaged."""
    boxes = find_objects(f.instances)
    for iid, cls in f.instance_class.items():
        sl = boxes[iid - 1]
        target = int(rng.choice(4, p=p_state))
        if sl is not None and any(a <= (sl[1].start + sl[1].stop) / 2 < b for a, b in intact_x):
            target = 0
        if cls not in DAMAGEABLE or target == 0 or sl is None:
            continue
        inst = (f.instances[sl] == iid).astype(np.uint8)
        if inst.sum() >= 400:
            _damage_one(rng, f.image[sl], f.damage[sl], inst, target)
    n = len(f.instance_class) + 1
    area = np.bincount(f.instances.ravel(), minlength=n)
    px = [np.bincount(f.instances.ravel(), weights=(f.damage == k).ravel(), minlength=n) for k in (CRACK, SPALL, REBAR)]
    for iid in f.instance_class:
        f.states[iid] = derive_state(int(px[0][iid]), int(px[1][iid]), int(px[2][iid]), int(area[iid]))
    return f

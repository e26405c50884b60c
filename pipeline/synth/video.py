"""Synthetic drone passes: a camera flies along a generated facade.

Writes CLIP.mp4, CLIP.srt (DJI-style telemetry) and CLIP.labels.npz, which holds the facade's
label maps and, per frame, the homography from frame pixels to facade pixels, so the labels of
any frame are one warp away (`frame_labels`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from tqdm import tqdm

from pipeline.core import Telemetry
from pipeline.synth.damage import add_damage
from pipeline.synth.facade import Facade, generate_facade
from pipeline.synth.views import camera_homography, render
from pipeline.telemetry import write_srt


def facade_video(out: str | Path, seconds: float = 10, seed: int = 0, fps: float = 30, size=(1280, 720),
                 speed_px_s: float = 90, progress: bool = True, intact: float = 0.0) -> dict:
    """`intact`: share of the pass over undamaged stretches of the facade (most of a real survey
    is intact wall): that share of the facade's stretches, picked at random, is left undamaged."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * fps)))
    ow, oh = size
    zoom = rng.uniform(1.0, 1.3)  # output px per facade px
    vw, vh = ow / zoom, oh / zoom
    travel = speed_px_s * seconds
    width = int(vw + travel + 200)
    # Stretches up to 2.5 views long, so some frames lie wholly over intact (or damaged) wall, but at
    # least four per facade: a short pass must not come out all intact or all damaged on a coin flip.
    span = min(2.5 * vw, width / 4)
    spans = [(int(a), int(a + span)) for a in np.arange(0, width, span)]
    intact_x = []
    if intact > 0:  # no draws otherwise: the damaged-only clips stay as they were
        pick = rng.choice(len(spans), int(round(intact * len(spans))), replace=False)
        intact_x = [spans[i] for i in sorted(pick)]
    f = add_damage(rng, generate_facade(rng, width, storey_px=(200, 260)), intact_x=intact_x)
    centre = f.components.shape[0] / 2  # the pass is aimed at the building's middle, before any padding
    # the view reaches 0.5 vh (+0.08 vh of bob, + the wobble's perspective) above and below its centre
    pad = max(0, int(np.ceil(0.65 * vh - centre)))
    f = _extend_sky_and_ground(f, pad)
    centre += pad
    metres_per_px = 3.0 / 230
    lat0, lon0, bearing = rng.uniform(-40, 50), rng.uniform(-120, 140), rng.uniform(0, 2 * np.pi)
    alt = rng.uniform(8, 25)
    # one look per clip (lighting, white balance); only sensor noise changes frame to frame
    noise = A.GaussNoise(std_range=(0.01, 0.03), p=1)
    # seeded apart from `rng`, so a clip's bytes follow from its seed without moving any other draw of it
    noise.set_random_seed(int(np.random.default_rng([seed, 1]).integers(2**31)))
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    Hs, tel = [], []
    phase = rng.uniform(0, 2 * np.pi, 3)
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-20, 20)
    for i in tqdm(range(n), desc="rendering clip", disable=not progress):
        t = i / fps
        cx = 100 + vw / 2 + speed_px_s * t
        cy = centre + 0.08 * vh * np.sin(0.4 * t + phase[0])
        H = camera_homography((cx, cy), (vw, vh), size, 0)
        # a slow, smooth yaw/pitch wobble: drone footage is oblique but not jittery
        wob = 0.03 * np.sin(0.3 * t + phase[1:])
        persp = np.array([[1, 0, 0], [0, 1, 0], [wob[0] / ow, wob[1] / oh, 1]])
        H = H @ persp
        img, _, _, _ = render(f, H, size)
        img = noise(image=np.clip(img * gain + bias, 0, 255).astype(np.uint8))["image"]
        writer.write(img)
        Hs.append(H)
        along = cx * metres_per_px
        tel.append(Telemetry(t, lat0 + along * np.cos(bearing) / 111_320,
                             lon0 + along * np.sin(bearing) / (111_320 * np.cos(np.radians(lat0))), alt))
    writer.release()
    os.replace(tmp, out)
    write_srt(out.with_suffix(".srt"), tel, fps)
    ids = np.array(sorted(f.instance_class), np.int32)
    np.savez_compressed(out.with_suffix(".labels.npz"), components=f.components, instances=f.instances, damage=f.damage,
                        homographies=np.array(Hs, np.float64), instance_ids=ids,
                        instance_class=np.array([f.instance_class[i] for i in ids], np.int32),
                        instance_state=np.array([f.states[i] for i in ids], np.int32), size=np.array(size))
    meta = {"frames": n, "fps": fps, "size": list(size), "zoom": round(float(zoom), 3), "seed": seed, "intact": intact,
            "components": len(ids), "video": str(out)}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return meta


def _extend_sky_and_ground(f: Facade, rows: int) -> Facade:
    """`rows` more sky above and ground below, each the facade's own band mirrored outwards. A view taller than
    a low building otherwise runs past the facade, and the renderer's mirrored border draws the building again,
    upside down, under its ground, with the same instance ids (a roll-up then counts it twice)."""
    if rows <= 0:
        return f
    filled = f.components.any(1)
    top, bottom = int(filled.argmax()), int(filled[::-1].argmax())  # rows of sky and of ground (no component)

    def grow(a: np.ndarray, is_label: bool) -> np.ndarray:
        if is_label:  # sky and ground are background, with no damage
            return np.pad(a, ((rows, rows),) + ((0, 0),) * (a.ndim - 1))
        sky = np.pad(a[:max(top, 1)], ((rows, 0),) + ((0, 0),) * (a.ndim - 1), mode="symmetric")[:rows]
        ground = np.pad(a[len(a) - max(bottom, 1):], ((0, rows),) + ((0, 0),) * (a.ndim - 1), mode="symmetric")[-rows:]
        return np.concatenate([sky, a, ground])

    return Facade(grow(f.image, False), grow(f.components, True), grow(f.instances, True), grow(f.damage, True),
                  f.instance_class, f.states)


def frame_labels(labels: dict, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Component mask, instance map and damage mask of frame `index` of a synthetic clip."""
    f = Facade(np.zeros((1, 1, 3), np.uint8), labels["components"], labels["instances"], labels["damage"])
    _, comp, inst, dmg = render(f, labels["homographies"][index], tuple(int(v) for v in labels["size"]))
    return comp, inst, dmg

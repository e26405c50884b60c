"""Procedural construction-site scenes: workers with a head point, hard hats in four situations, distractors.

A scene is plain data (`Worker`, `Prop`) drawn by `render`; the same scene drawn frame after frame with
small changes makes a video. Labels come from the scene, never from the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from pipeline.synth import textures

SITE_CLASSES = ("person", "hardhat", "head")
HAT_SITUATIONS = ("worn", "held", "ground", "table")
# BGR; the common hard-hat colours, which the distractors reuse on purpose
HAT_COLORS = [(235, 235, 235), (30, 205, 245), (20, 120, 245), (40, 40, 205), (190, 100, 20), (50, 160, 50)]
SKIN = [(170, 195, 230), (120, 150, 200), (80, 105, 150), (60, 75, 110)]
HIVIS = [(40, 230, 230), (20, 140, 250), (60, 240, 150)]


@dataclass
class Worker:
    x: float  # feet, centre
    y: float  # feet, ground contact
    height: float  # px, standing
    hat: str = "none"  # worn | held | none
    hat_color: tuple = HAT_COLORS[0]
    head_cover: str = "hair"  # hair | bald | cap | hood
    cover_color: tuple = (40, 40, 40)
    pose: str = "stand"  # stand | bend | arms_up
    stride: float = 0.0  # walk phase, -1..1
    facing: int = 1  # +1 right, -1 left
    skin: tuple = SKIN[0]
    shirt: tuple = (120, 80, 40)
    trousers: tuple = (60, 50, 40)
    vest: tuple | None = None
    track_id: int = 0

    @property
    def head_r(self) -> float:
        return 0.065 * self.height

    def joints(self) -> dict[str, np.ndarray]:
        h, x, y, f = self.height, self.x, self.y, self.facing
        hip = np.array([x, y - 0.50 * h])
        lean = {"stand": 0.0, "arms_up": 0.0, "bend": 0.55}[self.pose]  # radians of torso tilt
        up = np.array([np.sin(lean) * f, -np.cos(lean)])
        neck = hip + up * 0.33 * h
        head = neck + up * 0.10 * h
        side = np.array([np.cos(lean), np.sin(lean) * f])  # across the shoulders
        j = {"hip": hip, "neck": neck, "head": head,
             "sh_l": neck - side * 0.11 * h + [0, 0.03 * h], "sh_r": neck + side * 0.11 * h + [0, 0.03 * h]}
        s = self.stride * 0.12 * h
        j["knee_l"], j["knee_r"] = hip + [-0.05 * h + s * 0.5, 0.25 * h], hip + [0.05 * h - s * 0.5, 0.25 * h]
        j["foot_l"], j["foot_r"] = np.array([x - 0.06 * h + s, y]), np.array([x + 0.06 * h - s, y])
        if self.pose == "arms_up":
            j["elb_l"], j["elb_r"] = j["sh_l"] + [-0.06 * h, -0.14 * h], j["sh_r"] + [0.06 * h, -0.14 * h]
            j["hand_l"], j["hand_r"] = j["elb_l"] + [0, -0.14 * h], j["elb_r"] + [0, -0.14 * h]
        else:
            j["elb_l"], j["elb_r"] = j["sh_l"] + [-0.03 * h - s * 0.3, 0.15 * h], j["sh_r"] + [0.03 * h + s * 0.3, 0.15 * h]
            # a held hat is carried in front of the chest/waist
            fwd = 0.12 * h * f if self.hat == "held" else 0.0
            j["hand_l"] = j["elb_l"] + [0.01 * h, 0.14 * h]
            j["hand_r"] = j["elb_r"] + [fwd, 0.14 * h - (0.08 * h if self.hat == "held" else 0)]
        return j

    def head_box(self) -> np.ndarray:
        (cx, cy), r = self.joints()["head"], self.head_r
        return np.array([cx - 0.85 * r, cy - r, cx + 0.85 * r, cy + r])

    def hat_box(self) -> np.ndarray | None:
        j, r = self.joints(), self.head_r
        if self.hat == "worn":
            cx, cy = j["head"]
            # the brim sits just below the head centre, so the head point lies inside a worn hat
            return np.array([cx - 1.25 * r, cy - 1.25 * r, cx + 1.25 * r, cy + 0.25 * r])
        if self.hat == "held":
            cx, cy = j["hand_r"]
            return np.array([cx - 1.25 * r, cy - 1.3 * r, cx + 1.25 * r, cy + 0.2 * r])
        return None

    def box(self) -> np.ndarray:
        pts = np.array(list(self.joints().values()))
        r = self.head_r
        x0, y0 = pts.min(0) - [0.05 * self.height, 1.3 * r]
        x1, y1 = pts.max(0) + [0.05 * self.height, 0.02 * self.height]
        hb = self.hat_box()
        if self.hat == "worn" and hb is not None:
            y0 = min(y0, hb[1])
        return np.array([x0, y0, x1, y1])


@dataclass
class Prop:
    """Something that is not a worker: a loose hat, a table or machine, or a hat-coloured distractor."""

    kind: str  # hat | table | machine | ball | cone | crate
    box: np.ndarray  # x0, y0, x1, y1
    color: tuple
    situation: str | None = None  # for hats: ground | table
    depth: float | None = None  # ground contact y, for draw order; defaults to the box bottom

    @property
    def y(self) -> float:
        return float(self.box[3] if self.depth is None else self.depth)


@dataclass
class Scene:
    size: tuple[int, int]  # w, h
    background: np.ndarray
    workers: list[Worker] = field(default_factory=list)
    props: list[Prop] = field(default_factory=list)  # depth-sorted with the workers
    occluders: list[Prop] = field(default_factory=list)  # drawn after workers


def _shade(c, k):
    return tuple(int(np.clip(v * k, 0, 255)) for v in c)


def _line(img, a, b, color, t):
    cv2.line(img, tuple(np.int32(a)), tuple(np.int32(b)), color, max(1, int(t)), cv2.LINE_AA)


def draw_hat(img, box, color, tilt: float = 0.0):
    x0, y0, x1, y1 = box
    cx, w, h = (x0 + x1) / 2, x1 - x0, y1 - y0
    base = y1 - 0.15 * h
    cv2.ellipse(img, (int(cx), int(base)), (max(1, int(0.4 * w)), max(1, int(0.85 * h))), tilt, 180, 360,
                color, -1, cv2.LINE_AA)
    _line(img, (x0, base), (x1, base), _shade(color, 0.8), max(1, 0.15 * h))
    _line(img, (cx, base - 0.8 * h), (cx, base - 0.1 * h), _shade(color, 1.15), max(1, 0.06 * w))  # ridge highlight


def draw_worker(img, w: Worker):
    j, h, r = w.joints(), w.height, w.head_r
    limb = 0.045 * h
    for a, b, c in [("hip", "knee_l", w.trousers), ("knee_l", "foot_l", w.trousers),
                    ("hip", "knee_r", w.trousers), ("knee_r", "foot_r", w.trousers)]:
        _line(img, j[a], j[b], _shade(c, 0.9 if "l" in b[-1] else 1.0), limb * 1.3)
    torso = np.array([j["sh_l"], j["sh_r"], j["hip"] + [0.09 * h, 0], j["hip"] - [0.09 * h, 0]], np.int32)
    cv2.fillConvexPoly(img, torso, w.shirt, cv2.LINE_AA)
    if w.vest is not None:
        inner = np.array([j["sh_l"] * 0.8 + j["hip"] * 0.2, j["sh_r"] * 0.8 + j["hip"] * 0.2,
                          j["hip"] + [0.08 * h, -0.02 * h], j["hip"] - [0.08 * h, 0.02 * h]], np.int32)
        cv2.fillConvexPoly(img, inner, w.vest, cv2.LINE_AA)
        for t in (0.45, 0.7):
            a, b = j["sh_l"] * (1 - t) + j["hip"] * t, j["sh_r"] * (1 - t) + j["hip"] * t
            _line(img, a - [0.03 * h, 0], b + [0.03 * h, 0], (200, 200, 200), 0.02 * h)
    for a, b in [("sh_l", "elb_l"), ("elb_l", "hand_l"), ("sh_r", "elb_r"), ("elb_r", "hand_r")]:
        _line(img, j[a], j[b], w.shirt if a.startswith("sh") else _shade(w.shirt, 0.9), limb)
    for hand in ("hand_l", "hand_r"):
        cv2.circle(img, tuple(np.int32(j[hand])), max(1, int(0.3 * r)), w.skin, -1, cv2.LINE_AA)
    cx, cy = j["head"]
    if w.head_cover == "hood":
        cv2.ellipse(img, (int(cx), int(cy)), (int(1.15 * r), int(1.2 * r)), 0, 0, 360, w.cover_color, -1, cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), int(cy)), (max(1, int(0.85 * r)), max(1, int(r))), 0, 0, 360, w.skin, -1, cv2.LINE_AA)
    if r > 6:  # eyes only when the face is big enough to show them
        for dx in (-0.3, 0.3):
            cv2.circle(img, (int(cx + (dx + 0.15 * w.facing) * r), int(cy - 0.05 * r)), max(1, int(0.08 * r)),
                       (30, 30, 30), -1, cv2.LINE_AA)
    if w.head_cover == "hair":
        cv2.ellipse(img, (int(cx), int(cy - 0.1 * r)), (int(0.9 * r), int(0.95 * r)), 0, 180, 360, w.cover_color, -1,
                    cv2.LINE_AA)
    elif w.head_cover == "cap":  # a soft cap: low crown and a visor, often in hard-hat colours
        cv2.ellipse(img, (int(cx), int(cy - 0.3 * r)), (int(0.9 * r), int(0.7 * r)), 0, 180, 360, w.cover_color, -1,
                    cv2.LINE_AA)
        _line(img, (cx, cy - 0.3 * r), (cx + 1.5 * r * w.facing, cy - 0.25 * r), _shade(w.cover_color, 0.8), 0.2 * r)
    if w.hat in ("worn", "held"):
        draw_hat(img, w.hat_box(), w.hat_color, tilt=0.0 if w.hat == "worn" else 25.0 * w.facing)


def draw_prop(img, p: Prop):
    x0, y0, x1, y1 = p.box
    if p.kind == "hat":
        draw_hat(img, p.box, p.color)
    elif p.kind in ("table", "machine", "crate"):
        top = y0 + (0.15 if p.kind == "table" else 1.0) * (y1 - y0)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(top)), p.color, -1)
        if p.kind == "table":
            for lx in (x0 + 0.08 * (x1 - x0), x1 - 0.08 * (x1 - x0)):
                _line(img, (lx, top), (lx, y1), _shade(p.color, 0.6), max(2, 0.05 * (x1 - x0)))
        else:
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), _shade(p.color, 0.6), 2)
    elif p.kind == "ball":
        cv2.ellipse(img, (int((x0 + x1) / 2), int((y0 + y1) / 2)), (int((x1 - x0) / 2), int((y1 - y0) / 2)), 0, 0,
                    360, p.color, -1, cv2.LINE_AA)
    elif p.kind == "cone":
        pts = np.array([[(x0 + x1) / 2, y0], [x1, y1], [x0, y1]], np.int32)
        cv2.fillConvexPoly(img, pts, p.color, cv2.LINE_AA)


def background(rng, w: int, h: int) -> np.ndarray:
    horizon = int(h * rng.uniform(0.15, 0.6))
    img = textures.ground(rng, h, w)
    img[:horizon] = textures.sky(rng, horizon, w)
    for _ in range(rng.integers(1, 5)):  # buildings and site huts on the horizon
        bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.05, 0.4) * h
        bx = rng.uniform(-0.1, 1.0) * w
        y1 = horizon + rng.uniform(0, 0.05) * h
        tex = textures.wall(rng, max(2, int(bh)), max(2, int(bw))) if rng.random() < 0.5 else \
            textures.solid(rng, max(2, int(bh)), max(2, int(bw)), (160, 160, 150), 50)
        x0, y0 = int(bx), int(max(0, y1 - bh))
        x1, yb = min(w, x0 + tex.shape[1]), min(h, y0 + tex.shape[0])
        if x0 < 0 or x1 <= x0 or yb <= y0:
            continue
        img[y0:yb, x0:x1] = tex[: yb - y0, : x1 - x0]
    for _ in range(rng.integers(0, 8)):  # poles, scaffolding and cables: long thin structures as in real photos
        a = rng.uniform(0, 1, 2) * [w, h]
        b = a + rng.normal(0, 1, 2) * [w, h]
        c = tuple(int(v) for v in rng.integers(20, 200, 3))
        _line(img, a, b, c, rng.integers(1, 6))
    return img


def random_worker(rng, x, y, height, track_id=0) -> Worker:
    hat = str(rng.choice(["worn", "none", "held"], p=[0.55, 0.35, 0.10]))
    cover = str(rng.choice(["hair", "bald", "cap", "hood"], p=[0.55, 0.15, 0.2, 0.1]))
    cover_color = HAT_COLORS[rng.integers(len(HAT_COLORS))] if cover in ("cap", "hood") and rng.random() < 0.6 \
        else tuple(int(v) for v in rng.integers(10, 90, 3))
    return Worker(
        x=x, y=y, height=height, hat=hat, hat_color=HAT_COLORS[rng.integers(len(HAT_COLORS))],
        head_cover="hair" if hat == "worn" else cover, cover_color=cover_color,
        pose=str(rng.choice(["stand", "bend", "arms_up"], p=[0.7, 0.15, 0.15])),
        stride=float(rng.uniform(-1, 1)), facing=int(rng.choice([-1, 1])), skin=SKIN[rng.integers(len(SKIN))],
        shirt=tuple(int(v) for v in rng.integers(20, 230, 3)), trousers=tuple(int(v) for v in rng.integers(20, 120, 3)),
        vest=HIVIS[rng.integers(len(HIVIS))] if rng.random() < 0.5 else None, track_id=track_id)


def random_scene(rng: np.random.Generator, size=(416, 416)) -> Scene:
    w, h = size
    scene = Scene(size, background(rng, w, h))
    # close-ups (a few big workers) and wide shots (many small ones), as in the real photos
    close = rng.random() < 0.4
    n = int(rng.integers(1, 4) if close else rng.integers(2, 10))
    group_x = rng.uniform(0.2, 0.8) * w
    for i in range(n):
        y = rng.uniform(0.55, 1.0) * h if not close else rng.uniform(0.9, 1.6) * h
        height = (rng.uniform(0.6, 1.6) if close else rng.uniform(0.12, 0.55)) * h * (0.5 + y / h) / 1.5
        # workers often stand in tight groups, which is where hats get counted twice
        x = group_x + rng.normal(0, 0.25 * w) if rng.random() < 0.6 else rng.uniform(0, 1) * w
        scene.workers.append(random_worker(rng, x, y, height, track_id=i + 1))
    scene.workers.sort(key=lambda k: k.y)
    ref = float(np.median([k.height for k in scene.workers]))
    for _ in range(rng.integers(0, 4)):  # loose hats: on the ground or on a table/machine
        r = 0.065 * ref * rng.uniform(0.8, 1.2)
        gx, gy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.6, 0.98) * h
        color = HAT_COLORS[rng.integers(len(HAT_COLORS))]
        if rng.random() < 0.5:
            scene.props.append(Prop("hat", np.array([gx - 1.25 * r, gy - 1.5 * r, gx + 1.25 * r, gy]), color, "ground"))
        else:
            kind = str(rng.choice(["table", "machine"]))
            tw, th = rng.uniform(4, 9) * r, rng.uniform(3, 6) * r
            mc = tuple(int(v) for v in rng.integers(40, 200, 3))
            scene.props.append(Prop(kind, np.array([gx - tw / 2, gy - th, gx + tw / 2, gy]), mc))
            hx = gx + rng.uniform(-0.3, 0.3) * tw
            scene.props.append(Prop("hat", np.array([hx - 1.25 * r, gy - th - 1.5 * r, hx + 1.25 * r, gy - th]), color,
                                    "table", depth=gy + 1e-3))
    for _ in range(rng.integers(0, 4)):  # hat-coloured round things that are not hats
        r = 0.06 * ref * rng.uniform(0.6, 1.5)
        gx, gy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.5, 0.98) * h
        kind = str(rng.choice(["ball", "cone"]))
        color = HAT_COLORS[rng.integers(len(HAT_COLORS))] if kind == "ball" else (20, 110, 240)
        scene.props.append(Prop(kind, np.array([gx - r, gy - 2 * r, gx + r, gy]), color))
    if rng.random() < 0.4:  # a crate or barrier in front of someone's legs
        k = scene.workers[rng.integers(len(scene.workers))]
        bw = rng.uniform(0.3, 0.8) * k.height * 0.5
        scene.occluders.append(Prop("crate", np.array([k.x - bw, k.y - 0.35 * k.height, k.x + bw, k.y + 5]),
                                    tuple(int(v) for v in rng.integers(40, 160, 3))))
    return scene


def render(scene: Scene) -> np.ndarray:
    img = scene.background.copy()
    # far (small ground y) first, so that nearer things occlude them
    for thing in sorted(scene.props + scene.workers, key=lambda t: t.y):
        draw_worker(img, thing) if isinstance(thing, Worker) else draw_prop(img, thing)
    for p in scene.occluders:
        draw_prop(img, p)
    return img


def _clip(box, w, h, min_vis=0.3, min_px=3):
    """Box clipped to the image; None when too little of it is in view."""
    x0, y0, x1, y1 = box
    c = np.array([max(0, x0), max(0, y0), min(w, x1), min(h, y1)])
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    if c[2] - c[0] < min_px or c[3] - c[1] < min_px or (c[2] - c[0]) * (c[3] - c[1]) / area < min_vis:
        return None
    return c


def _inside(pt, box) -> bool:
    return box[0] <= pt[0] <= box[2] and box[1] <= pt[1] <= box[3]


def labels(scene: Scene) -> dict:
    """Boxes, head points and hat situations of everything visible in the scene."""
    w, h = scene.size
    persons, hats, heads = [], [], []
    for k in scene.workers:
        head = k.joints()["head"]
        pb, hb = _clip(k.box(), w, h, 0.2), _clip(k.head_box(), w, h, 0.5)
        if pb is None or hb is None or not (0 <= head[0] < w and 0 <= head[1] < h):
            continue  # a worker whose head is out of view cannot be judged, so is not labelled
        persons.append({"box": pb.tolist(), "head": head.tolist(), "wears": k.hat == "worn", "id": k.track_id})
        heads.append({"box": hb.tolist(), "head": head.tolist(), "wears": k.hat == "worn"})
        if k.hat in ("worn", "held") and (b := _clip(k.hat_box(), w, h, 0.5)) is not None:
            hats.append({"box": b.tolist(), "situation": k.hat})
    for p in scene.props:
        if p.kind != "hat" or (b := _clip(p.box, w, h, 0.5)) is None:
            continue
        c = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        if any(k.y > p.y and _inside(c, k.box()) for k in scene.workers):
            continue  # hidden behind a nearer worker
        hats.append({"box": b.tolist(), "situation": p.situation})
    return {"persons": persons, "hats": hats, "heads": heads}


def yolo_lines(lab: dict, size) -> list[str]:
    """YOLO-pose rows: class cx cy w h kx ky v, all normalised; hats carry an invisible keypoint."""
    w, h = size
    rows = []

    def row(cls, box, pt):
        x0, y0, x1, y1 = box
        k = f"{pt[0] / w:.5f} {pt[1] / h:.5f} 2" if pt is not None else "0 0 0"
        rows.append(f"{cls} {(x0 + x1) / 2 / w:.5f} {(y0 + y1) / 2 / h:.5f} {(x1 - x0) / w:.5f} {(y1 - y0) / h:.5f} {k}")

    for p in lab["persons"]:
        row(0, p["box"], p["head"])
    for t in lab["hats"]:
        row(1, t["box"], None)
    for d in lab["heads"]:
        row(2, d["box"], d["head"])
    return rows


def animate(scene: Scene, t: float, rng_seed: int) -> Scene:
    """The scene `t` seconds later: workers walk, turn, and take hats off and put them back on."""
    rng = np.random.default_rng(rng_seed)
    w, _ = scene.size
    moved = []
    for k in scene.workers:
        speed = rng.uniform(0.3, 1.0) * k.height * 0.4  # px/s, about a slow walk
        direction = k.facing if rng.random() < 0.8 else -k.facing
        period = rng.uniform(4, 8)
        # walk back and forth along a segment, turning at its ends
        phase = (t * speed / max(w * 0.3, 1)) % 2
        dx = (phase if phase < 1 else 2 - phase) * w * 0.3 * direction
        facing = direction if phase < 1 else -direction
        hat = k.hat
        if k.hat == "worn" and rng.random() < 0.5:
            off0 = rng.uniform(1, 4)
            if off0 <= t % period < off0 + 2.0:  # off for 2 s in each period
                hat = "held"
        moved.append(replace(k, x=k.x + dx, facing=int(facing), stride=float(np.sin(t * 6.0 + k.track_id)),
                             hat=hat, head_cover="hair" if hat == "worn" else k.head_cover))
    return replace(scene, workers=sorted(moved, key=lambda k: k.y))

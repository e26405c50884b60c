"""Train "nothing here" gates (DVC `train_damage_gate`, `train_safety_gate`).

    python -m pipeline.train.gate params.yaml train_damage_gate
    python -m pipeline.train.gate params.yaml train_safety_gate

The segmenter is frozen; its encoder runs once per image up to the gate block, and a `CellGate`
learns from those features which cells (one per feature-map pixel) hold damage. Images are what
the stage sees: synthetic facade views, frames of synthetic drone passes with intact stretches and
of short intact passes over many facades, at the stage's input scale, plus the real crack photos
when present. The threshold is then set on held-out images so that at least `recall` of the images
with damage pass the gate.

The site detector's gate is trained the same way on the YOLO model's features after layer
`layer`, with cells marked where a person or a head is (a hat on its own needs no decision), on
the synthetic site images, the real hard-hat photos, and empty synthetic sites.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adaptive.gate import TASK, CellGate, blocks_of, features_until
from pipeline.models import checkpoint
from pipeline.models.preprocess import to_tensor
from pipeline.train.common import load_params, setup
from pipeline.train.seg_data import read_pair, real_crack_pairs, synthetic_pairs
from stages.segmentation import pad_to_multiple


def clip_frames(seconds: float, seed: int, intact: float, every: int, scale: float, fps: float = 30) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, damage mask) pairs from a synthetic drone pass, at the stage's input scale."""
    from pipeline.synth.video import facade_video, frame_labels

    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.mp4"
        facade_video(clip, seconds=seconds, seed=seed, fps=fps, intact=intact, progress=False)
        labels = dict(np.load(clip.with_suffix(".labels.npz")))
        cap, out, i = cv2.VideoCapture(str(clip)), [], 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if i % every == 0:
                dmg = frame_labels(labels, i)[2]
                out.append(_scaled(img, dmg, scale))
            i += 1
    return out


def intact_passes(ip: dict, scale: float) -> tuple[list, list]:
    """(train, held-out) frames of short passes over wholly intact facades, one facade each: `ip` gives how
    many passes of each, their seconds and fps, and the first facade's seed.

    Intact wall looks different on every facade. With a few long intact passes the gate learnt (and was
    judged on) two or three facades' textures; short passes over many facades teach "nothing here" itself."""
    passes = [clip_frames(ip["seconds"], ip["seed"] + i, 1.0, 1, scale, ip["fps"])
              for i in tqdm(range(ip["train"] + ip["val"]), desc="intact passes")]
    return [f for c in passes[: ip["train"]] for f in c], [f for c in passes[ip["train"] :] for f in c]


def _scaled(img, mask, scale):
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # area-averaged, then > 0: a damage pixel survives the downscale however thin the crack
    m = cv2.resize((np.asarray(mask) > 0).astype(np.uint8) * 255, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA) > 0
    return img, m


def pairs_from(files, scale) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_scaled(*read_pair(*f), scale) for f in files]


@torch.no_grad()  # not inference_mode: the head trains on these tensors
def encode(seg, block: int, data, desc: str, min_px: int = 1) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """Per image: (block features [C, h, w], cell targets [h, w], image has damage (None: too little to count))."""
    fm, out = blocks_of(seg), []
    for img, mask in tqdm(data, desc=desc):
        # padded as the stage pads, so the head trains on the activations it will see
        x, h, w = pad_to_multiple(to_tensor([img]))
        _, f = features_until(fm, x, block)
        m = torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None, None]
        m = F.pad(m, (0, x.shape[-1] - w, 0, x.shape[-2] - h))
        cells = F.adaptive_max_pool2d(m, f.shape[-2:])[0, 0]
        px = int(np.asarray(mask).astype(bool).sum())
        out.append((f[0].clone(), cells, True if px >= min_px else (False if px == 0 else None)))
    return out


def train_head(items, channels: int, p: dict) -> CellGate:
    gate = CellGate(channels, p.get("hidden", 32))
    opt = torch.optim.AdamW(gate.parameters(), lr=p["lr"], weight_decay=1e-4)
    pos = sum(float(t.sum()) for _, t, _ in items)
    neg = sum(t.numel() for _, t, _ in items) - pos
    pos_weight = torch.tensor(min(neg / max(pos, 1), p.get("max_pos_weight", 20.0)))
    rng = np.random.default_rng(p["seed"])
    for epoch in range(p["epochs"]):
        gate.train()
        total = 0.0
        for i in rng.permutation(len(items)):
            f, t, _ = items[i]
            z = gate(f[None])[0]
            # cells teach where; the max over cells is what decides, so it is trained as well
            loss = F.binary_cross_entropy_with_logits(z, t, pos_weight=pos_weight) + \
                F.binary_cross_entropy_with_logits(z.amax(), t.amax())
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"gate epoch {epoch + 1}/{p['epochs']}: loss {total / len(items):.4f}")
    return gate.eval()


@torch.inference_mode()
def top_cells(gate: CellGate, items) -> np.ndarray:
    """Each encoded image's highest cell probability: what the gate compares with its threshold."""
    return np.array([float(torch.sigmoid(gate(f[None])).max()) for f, _, _ in items])


@torch.inference_mode()
def calibrate(gate: CellGate, items, recall: float) -> dict:
    """The highest threshold that lets at least `recall` of damaged images through, and what it skips."""
    items = [it for it in items if it[2] is not None]
    top = top_cells(gate, items)
    has = np.array([h for _, _, h in items], bool)
    if not has.any():
        raise SystemExit("no held-out image has damage: cannot calibrate the gate")
    t = float(np.quantile(top[has], 1 - recall, method="lower"))
    return {"threshold": t, "recall": float((top[has] >= t).mean()), "skipped_clean": float((top[~has] < t).mean()) if (~has).any() else None,
            "n_damaged": int(has.sum()), "n_clean": int((~has).sum())}


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """As ultralytics prepares an image for a .pt model: long side to `size`, centred grey padding to /32."""
    h, w = img.shape[:2]
    r = size / max(h, w)
    img = cv2.resize(img, (round(w * r), round(h * r)), interpolation=cv2.INTER_LINEAR)
    ph, pw = (-img.shape[0]) % 32, (-img.shape[1]) % 32
    return cv2.copyMakeBorder(img, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_CONSTANT, value=(114, 114, 114))


def yolo_boxes(label: Path, classes: set[int]) -> np.ndarray:
    """Normalised (cx, cy, w, h) rows of the wanted classes from a YOLO label file."""
    rows = [ln.split() for ln in label.read_text().splitlines() if ln.strip()] if label.exists() else []
    return np.array([[float(v) for v in r[1:5]] for r in rows if int(r[0]) in classes], np.float32).reshape(-1, 4)


def box_mask(shape, boxes: np.ndarray) -> np.ndarray:
    h, w = shape
    m = np.zeros((h, w), np.uint8)
    for cx, cy, bw, bh in boxes:
        x0, y0 = int((cx - bw / 2) * w), int((cy - bh / 2) * h)
        m[max(y0, 0) : int((cy + bh / 2) * h) + 1, max(x0, 0) : int((cx + bw / 2) * w) + 1] = 1
    return m


def site_pairs(images: list[Path], labels_dir: Path, classes: set[int], size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for p in images:
        img = letterbox(cv2.imread(str(p)), size)
        h, w = img.shape[:2]
        src = cv2.imread(str(p)).shape[:2]
        r = size / max(src)
        nh, nw = round(src[0] * r), round(src[1] * r)
        m = np.zeros((h, w), np.uint8)
        oy, ox = (h - nh) // 2, (w - nw) // 2
        m[oy : oy + nh, ox : ox + nw] = box_mask((nh, nw), yolo_boxes(labels_dir / f"{p.stem}.txt", classes))
        out.append((img, m))
    return out


def empty_sites(n: int, seed: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sites with nobody on them: ground, machines, loose hats, cones."""
    from dataclasses import replace

    from pipeline.synth.site import random_scene, render

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = render(replace(random_scene(rng, (size, size)), workers=[], occluders=[]))
        out.append((letterbox(img, size), np.zeros((size, size), np.uint8)))
    return out


@torch.no_grad()
def encode_yolo(det, layer: int, data, desc: str):
    out = []
    for img, mask in tqdm(data, desc=desc):
        x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).float()[None] / 255
        y = []
        for m in det.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in det.save else None)
            if m.i == layer:
                break
        cells = F.adaptive_max_pool2d(torch.from_numpy(mask.astype(np.float32))[None, None], x.shape[-2:])[0, 0]
        out.append((x[0].clone(), cells, bool(cells.any())))
    return out


def train_safety_gate(p: dict) -> None:
    from pipeline.models.yolo import load_yolo

    det = load_yolo(p["target"]).model.eval()
    size, root = p["imgsz"], Path(p["data"])
    # synthetic: persons and heads (class 1, hats, can lie on the ground with nobody near)
    train = site_pairs(sorted((root / "images" / "train").glob("*.jpg"))[: p.get("synthetic")], root / "labels" / "train", {0, 2}, size)
    val = site_pairs(sorted((root / "images" / "val").glob("*.jpg")), root / "labels" / "val", {0, 2}, size)
    real = Path(p["real"]) / "hardhat_workers" if p.get("real") else None
    if real is not None and real.exists():
        for split, dest in (("train", train), ("val", val)):
            dest += site_pairs(sorted((real / "images" / split).glob("*.jpg")), real / "labels" / split, {0, 1, 2}, size)
    elif real is not None:
        print(f"real data not found at {real}: the gate learns from synthetic images only", file=sys.stderr)
    train += empty_sites(p["empty_train"], p["seed"], size)
    val += empty_sites(p["empty_val"], p["seed"] + 1, size)
    tr, va = encode_yolo(det, p["layer"], train, "gate features (train)"), encode_yolo(det, p["layer"], val, "gate features (val)")
    gate = train_head(tr, tr[0][0].shape[0], p)
    cal = calibrate(gate, va, p["recall"])
    print(f"gate after layer {p['layer']}: threshold {cal['threshold']:.4f}, images with workers passed {cal['recall']:.3f}, "
          f"empty sites stopped {cal['skipped_clean']}")
    checkpoint.write(p["out"], {"task": TASK, "state_dict": gate.state_dict(), "args": {"in_channels": tr[0][0].shape[0], "hidden": p.get("hidden", 32)},
                                "block": p["layer"], "threshold": cal["threshold"], "calibration": cal,
                                "target": {"weights": Path(p["target"]).name, "sha": checkpoint.file_sha(p["target"])}})


def main(params_path: str, section: str) -> None:
    p = load_params(params_path, section)
    setup(p["seed"])
    torch.set_grad_enabled(True)
    if p.get("kind") == "detector":
        return train_safety_gate(p)
    seg, meta = checkpoint.load(p["target"], "damage_segmentation")
    seg.eval()
    scale = float(meta.get("meta", {}).get("input_scale", p.get("scale", 0.5)))
    root = Path(p["data"])
    syn = synthetic_pairs(root, "train", "damage")[: p.get("synthetic")]
    train = pairs_from(syn, scale)
    val = pairs_from(synthetic_pairs(root, "val", "damage"), scale)
    for k, c in enumerate(p["clips"]):
        frames = clip_frames(c["seconds"], c["seed"], c["intact"], c["every"], scale, c.get("fps", 30))
        (val if c.get("val") else train).extend(frames)
    if p.get("intact_passes"):
        more_train, more_val = intact_passes(p["intact_passes"], scale)
        train, val = train + more_train, val + more_val
    real = Path(p["real"]) if p.get("real") else None
    if real is not None and real.exists():
        rp = real_crack_pairs(real, p.get("holdout", {}))
        train += pairs_from(rp["train"], p.get("real_scale", 1.0))
        val += pairs_from(rp["uav75_val"], p.get("real_scale", 1.0))
    elif real is not None:
        print(f"real data not found at {real}: the gate learns from synthetic images only", file=sys.stderr)
    block = p["block"]
    tr = encode(seg, block, train, "gate features (train)")
    va = encode(seg, block, val, "gate features (val)", p.get("min_px", 1))
    gate = train_head(tr, tr[0][0].shape[0], p)
    cal = calibrate(gate, va, p["recall"])
    print(f"gate after block {block}: threshold {cal['threshold']:.4f}, damaged images passed {cal['recall']:.3f}, "
          f"clean images stopped {cal['skipped_clean']}")
    checkpoint.write(p["out"], {"task": TASK, "state_dict": gate.state_dict(), "args": {"in_channels": tr[0][0].shape[0], "hidden": p.get("hidden", 32)},
                                "block": block, "threshold": cal["threshold"], "calibration": cal,
                                "target": {"weights": Path(p["target"]).name, "sha": checkpoint.file_sha(p["target"])}})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

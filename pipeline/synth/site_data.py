"""Synthetic site datasets (YOLO-pose layout) and site videos, plus the real hard-hat set in the same layout."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from pipeline.synth.site import SITE_CLASSES, animate, labels, random_scene, render, yolo_lines
from pipeline.synth.views import photometric


def dataset_yaml(root: Path, splits: dict[str, str | list[str]]) -> Path:
    """The ultralytics data file: three classes, one keypoint (the head centre), which is its own mirror."""
    data = {"path": str(root.resolve()), **splits, "names": dict(enumerate(SITE_CLASSES)),
            "kpt_shape": [1, 3], "flip_idx": [0]}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def generate_sites(out: str | Path, counts: dict[str, int], size: int = 416, seed: int = 0,
                   progress: bool = True) -> Path:
    """OUT/images/<split>/*.jpg, OUT/labels/<split>/*.txt and OUT/meta/<split>.jsonl (hat situations)."""
    out = Path(out)
    aug = photometric(0.8)
    for split_i, (split, n) in enumerate(counts.items()):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        (out / "meta").mkdir(parents=True, exist_ok=True)
        meta = []
        for i in tqdm(range(n), desc=f"sites/{split}", disable=not progress):
            img_seed = seed * 1_000_003 + split_i * 100_000 + i
            rng = np.random.default_rng(img_seed)
            scene = random_scene(rng, (size, size))
            aug.set_random_seed(img_seed)  # so a rerun with the same seed gives the same bytes
            img = aug(image=render(scene))["image"]
            name = f"{split}_{i:05d}"
            cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            lab = labels(scene)
            (out / "labels" / split / f"{name}.txt").write_text("\n".join(yolo_lines(lab, scene.size)) + "\n")
            meta.append(json.dumps({"image": f"{name}.jpg", **lab}))
        (out / "meta" / f"{split}.jsonl").write_text("\n".join(meta) + "\n")
    return dataset_yaml(out, {k: f"images/{k}" for k in counts})


def real_hardhat_yolo(real: str | Path, out: str | Path, hat_share: float = 0.6) -> Path:
    """The real Hard Hat Workers set in our class layout, with images linked, not copied.

    Its boxes mark heads: `helmet` (a head wearing a hat) and `head` (bare). Both become `head` boxes
    with the box centre as the head point. A helmet box also yields a `hardhat` box: its top
    `hat_share`, where the hat sits, which keeps the head point inside the hat as in the synthetic data.
    The rare `person` boxes are dropped: most persons in these photos are not boxed.
    """
    real, out = Path(real), Path(out)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for img in sorted((real / "images" / split).glob("*.jpg")):
            link = out / "images" / split / img.name
            if not link.exists():
                os.symlink(img.resolve(), link)
            rows = []
            src = real / "labels" / split / f"{img.stem}.txt"
            for line in src.read_text().split("\n") if src.exists() else []:
                if not line.strip():
                    continue
                c, cx, cy, w, h = line.split()[:5]
                cx, cy, w, h = map(float, (cx, cy, w, h))
                if c == "1":
                    continue
                rows.append(f"2 {cx:.5f} {cy:.5f} {w:.5f} {h:.5f} {cx:.5f} {cy:.5f} 2")
                if c == "0":
                    y0 = cy - h / 2
                    rows.append(f"1 {cx:.5f} {y0 + h * hat_share / 2:.5f} {w:.5f} {h * hat_share:.5f} 0 0 0")
            (out / "labels" / split / f"{img.stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
    return dataset_yaml(out, {"train": "images/train", "val": "images/val"})


def site_video(out: str | Path, seconds: float = 10, seed: int = 0, fps: float = 10, size=(1280, 720),
               progress: bool = True, empty: float = 0.0) -> dict:
    """A fixed camera over a site: workers walk, turn, take hats off and on. Writes CLIP.mp4 and
    CLIP.labels.jsonl (one line of persons/hats/heads per frame, with track ids). `empty`: share of
    each 10 s in which nobody is on site (breaks, shift changes), at its end."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, size)
    while len(scene.workers) < 2:
        scene = random_scene(rng, size)
    n = max(1, int(round(seconds * fps)))
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    lines = []
    for i in tqdm(range(n), desc="rendering site clip", disable=not progress):
        s = animate(scene, i / fps, seed)
        if empty > 0 and (i / fps / 10.0) % 1.0 >= 1 - empty:
            s = replace(s, workers=[], occluders=[])
        writer.write(render(s))
        lines.append(json.dumps({"frame": i, **labels(s)}))
    writer.release()
    os.replace(tmp, out)
    out.with_suffix(".labels.jsonl").write_text("\n".join(lines) + "\n")
    return {"frames": n, "fps": fps, "size": list(size), "workers": len(scene.workers), "empty": empty, "video": str(out)}


if __name__ == "__main__":  # python -m pipeline.synth.site_data params.yaml
    import sys

    from pipeline.train.common import load_params

    p = load_params(sys.argv[1], "generate_sites")
    generate_sites(p["out"], {"train": p["train"], "val": p["val"], "test": p["test"]}, p["size"], p["seed"])

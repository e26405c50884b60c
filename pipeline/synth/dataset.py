"""The synthetic facade dataset: image views with component and damage masks, and component
crops labelled with their condition. Layout under OUT:

    images/{split}/{id}.jpg       components/{split}/{id}.png (pixel = component class id)
    damage/{split}/{id}.png (pixel = damage class id)
    crops/{split}/{id}_{k}.png    crops/{split}.csv  (file, class_id, state, crack, spall, rebar, area)
"""

from __future__ import annotations

import csv
import json
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.components import crop_rect, extract_components
from pipeline.core import DAMAGEABLE
from pipeline.synth.damage import add_damage, derive_state
from pipeline.synth.facade import generate_facade
from pipeline.synth.views import photometric, random_view

SPLITS = {"train": 0, "val": 1, "test": 2}


def random_facade(rng: np.random.Generator):
    """A damaged facade as the training set draws them (also the 8-bit models' calibration frames)."""
    return add_damage(rng, generate_facade(rng, int(rng.integers(900, 1500))))


def _facade_job(args):
    out, split, fid, views, size, crop_size, seed = args
    rng = np.random.default_rng([seed, SPLITS[split], fid])
    f = random_facade(rng)
    aug = photometric()
    # albumentations draws from its own generator: seeded per facade so a rerun writes the same bytes
    # (and dvc repro's hash of data/synth holds); the facade's own rng stream is left untouched
    aug.set_random_seed(int(np.random.default_rng([seed, SPLITS[split], fid, 1]).integers(2**31)))
    rows = []
    for v in range(views):
        name = f"{fid:05d}_{v}"
        img, comp, _, dmg = random_view(rng, f, size)
        img = aug(image=img)["image"]
        cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        cv2.imwrite(str(out / "components" / split / f"{name}.png"), comp)
        cv2.imwrite(str(out / "damage" / split / f"{name}.png"), dmg)
        comps, _ = extract_components(comp, dmg, classes=sorted(DAMAGEABLE))
        for k, c in enumerate(comps):
            state = derive_state(c.damage_px["crack"], c.damage_px["spall"], c.damage_px["rebar"], c.area_px)
            crop_name = f"{name}_{k}.png"
            cv2.imwrite(str(out / "crops" / split / crop_name), crop_rect(img, c.rect, crop_size))
            rows.append([crop_name, c.class_id, state, c.damage_px["crack"], c.damage_px["spall"], c.damage_px["rebar"], c.area_px])
    return rows


def generate(out: Path, counts: dict[str, int], size: int = 384, views_per_facade: int = 3, crop_size: int = 64,
             seed: int = 0, workers: int | None = None) -> dict:
    out = Path(out)
    for sub in ("images", "components", "damage", "crops"):
        for split in counts:
            (out / sub / split).mkdir(parents=True, exist_ok=True)
    stats = {}
    with Pool(workers) as pool:
        for split, n_images in counts.items():
            n_fac = -(-n_images // views_per_facade)
            jobs = [(out, split, i, views_per_facade, size, crop_size, seed) for i in range(n_fac)]
            rows = []
            for r in tqdm(pool.imap(_facade_job, jobs), total=n_fac, desc=f"facades/{split}"):
                rows += r
            with open(out / "crops" / f"{split}.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["file", "class_id", "state", "crack", "spall", "rebar", "area"])
                w.writerows(rows)
            stats[split] = {"images": n_fac * views_per_facade, "crops": len(rows),
                            "states": np.bincount([r[2] for r in rows], minlength=4).tolist()}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats

"""Train the component-condition classifier on synthetic component crops.

    python -m pipeline.train.condition params.yaml train_condition
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.core import DAMAGE_STATES
from pipeline.models import checkpoint
from pipeline.models.preprocess import to_tensor
from pipeline.train.common import autocast, channels_last, check_precision, load_params, setup


def read_crops(root: Path, split: str) -> list[tuple[Path, int]]:
    with open(root / "crops" / f"{split}.csv") as fh:
        return [(root / "crops" / split / r["file"], int(r["state"])) for r in csv.DictReader(fh)]


class CropDataset(Dataset):
    def __init__(self, rows, train: bool):
        self.rows, self.train = rows, train

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        path, label = self.rows[i]
        img = cv2.imread(str(path))
        if self.train:
            if np.random.rand() < 0.5:
                img = img[:, ::-1]
            if np.random.rand() < 0.5:
                img = img[::-1]
            img = np.clip(img * np.random.uniform(0.8, 1.2) + np.random.uniform(-15, 15), 0, 255).astype(np.uint8)
        return to_tensor(img)[0], label


def predict(model, loader, device, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    ys, ps = [], []
    with torch.inference_mode(), autocast(precision, device):
        for x, y in loader:
            ps.append(model(channels_last(x.to(device))).argmax(1).cpu().numpy())
            ys.append(y.numpy())
    return np.concatenate(ys), np.concatenate(ps)


def train(p: dict) -> dict:
    device = setup(p.get("seed", 0))
    precision = check_precision(p.get("precision", "fp32"), device)
    root = Path(p["data"])
    rows = read_crops(root, "train")
    counts = np.bincount([r[1] for r in rows], minlength=len(DAMAGE_STATES))
    # rare states (severe) are sampled as often as common ones
    w = (1.0 / np.maximum(counts, 1))[[r[1] for r in rows]]
    sampler = torch.utils.data.WeightedRandomSampler(w, num_samples=len(rows), replacement=True)
    loader = DataLoader(CropDataset(rows, True), batch_size=p["batch"], sampler=sampler, num_workers=p.get("workers", 0))
    val_loader = DataLoader(CropDataset(read_crops(root, "val"), False), batch_size=256)
    model = channels_last(checkpoint.build(p["model"]).to(device))
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p["lr"], total_steps=p["epochs"] * len(loader), pct_start=0.2)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    best, history, t0 = -1.0, [], time.time()
    for epoch in range(p["epochs"]):
        model.train()
        for x, y in tqdm(loader, desc=f"condition epoch {epoch + 1}/{p['epochs']}"):
            with autocast(precision, device):
                logits = model(channels_last(x.to(device)))
            loss = loss_fn(logits.float(), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        y, pred = predict(model, val_loader, device, precision)
        f1 = float(f1_score(y, pred, average="macro"))
        history.append({"epoch": epoch + 1, "val_macro_f1": round(f1, 4), "val_acc": round(float((y == pred).mean()), 4)})
        print(json.dumps(history[-1]), flush=True)
        if f1 > best:
            best = f1
            checkpoint.save(p["out"], model, p["model"], "condition_classification", list(DAMAGE_STATES),
                            meta={"crop_size": p["crop_size"], "history": history, "train_seconds": round(time.time() - t0),
                                  "precision": precision})
    return {"best_val_macro_f1": best}


if __name__ == "__main__":
    train(load_params(sys.argv[1], sys.argv[2]))

"""Train a semantic segmentation model (components or damage) on synthetic views, optionally
mixed with the real crack sets, and save an inspectflow checkpoint.

    python -m pipeline.train.segmentation params.yaml train_damage
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import ConcatDataset, DataLoader, WeightedRandomSampler
from tqdm import tqdm

from pipeline.metrics import confusion, iou_per_class
from pipeline.models import checkpoint
from pipeline.train.common import autocast, channels_last, check_precision, load_params, setup
from pipeline.train.seg_data import HARD_NEGATIVE, SegDataset, real_crack_pairs, synthetic_pairs


def evaluate(model, loader, n_classes, device, precision: str = "fp32") -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), np.int64)
    model.eval()
    with torch.inference_mode(), autocast(precision, device):
        for x, y in loader:
            pred = model(channels_last(x.to(device))).argmax(1).cpu().numpy()
            cm += confusion(pred, y.numpy(), n_classes)
    return cm


def per_image_dice(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Soft Dice of each foreground class in each image where it occurs, averaged. A batch-wide Dice
    lets one photo of a wide crack outweigh ten hairlines; here every image counts the same."""
    prob = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
    inter = (prob * onehot).sum((2, 3))[:, 1:]
    card = (prob + onehot).sum((2, 3))[:, 1:]
    present = onehot.sum((2, 3))[:, 1:] > 0
    if not present.any():
        return logits.sum() * 0
    return (1 - (2 * inter + 1) / (card + 1))[present].mean()


def training_set(p: dict, root: Path) -> tuple[ConcatDataset, WeightedRandomSampler | None]:
    """Synthetic views, plus the real crack sets when `real` is given and present. `real_mix` gives
    each real set's share of the samples drawn (synthetic gets the rest); without it the real sets
    repeat until they make up `real_share` of an epoch."""
    train_pairs = synthetic_pairs(root, "train", p["mask_dir"])
    if p.get("max_train"):
        train_pairs = train_pairs[: p["max_train"]]
    sets = [SegDataset(train_pairs, p["crop"], p.get("scale", 1.0))]
    real = Path(p["real"]) if p.get("real") else None
    if real is None or not real.exists():
        if real is not None:
            print(f"real data not found at {real}: training on synthetic data only", file=sys.stderr)
        return ConcatDataset(sets), None
    rp = real_crack_pairs(real, p.get("holdout", {}), hard_negatives=p.get("hard_negative_weight", 1.0) != 1.0)
    if not p.get("real_mix"):
        reps = max(1, round(len(train_pairs) * p.get("real_share", 0.5) / max(len(rp["train"]), 1)))
        return ConcatDataset(sets + [SegDataset(rp["train"], p["crop"], p.get("real_scale", 1.0))] * reps), None
    shares = [1.0 - sum(p["real_mix"].values())]
    for name, share in p["real_mix"].items():
        if f"train_{name}" not in rp:
            raise ValueError(f"real_mix: unknown crack set {name!r}; known: {[k[6:] for k in rp if k.startswith('train_')]}")
        sets.append(SegDataset(rp[f"train_{name}"], p["crop"], p.get("real_scale", 1.0), vflip=True))
        shares.append(share)
    if min(shares) < 0:
        raise ValueError(f"real_mix shares add up to {sum(shares[1:]):.2f}; they must leave synthetic a share >= 0")
    weights = torch.cat([torch.full((len(d),), s / max(len(d), 1)) for d, s in zip(sets, shares)])
    n = p["batch"] * (p.get("steps_per_epoch") or len(train_pairs) // p["batch"])
    return ConcatDataset(sets), WeightedRandomSampler(weights, n, replacement=True)


def train(p: dict) -> dict:
    device = setup(p.get("seed", 0))
    precision = check_precision(p.get("precision", "fp32"), device)
    root = Path(p["data"])
    n = len(p["classes"])
    ds, sampler = training_set(p, root)
    val = SegDataset(synthetic_pairs(root, "val", p["mask_dir"]), p["val_crop"], p.get("scale", 1.0), train=False)
    loader = DataLoader(ds, batch_size=p["batch"], shuffle=sampler is None, sampler=sampler,
                        num_workers=p.get("workers", 0), drop_last=True)
    val_loader = DataLoader(val, batch_size=p["batch"])

    model = checkpoint.build(p["model"]).to(device)
    if p.get("init"):
        init, _ = checkpoint.load(p["init"], p["task"])
        model.load_state_dict(init.state_dict())
    model = channels_last(model)
    weights = torch.tensor(p.get("class_weights", [1.0] * n), dtype=torch.float32, device=device)
    hard = p.get("hard_negative_weight", 1.0)
    dice = per_image_dice if p.get("dice") == "per_image" else smp.losses.DiceLoss("multiclass", from_logits=True)
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=1e-4)
    steps = p["epochs"] * min(len(loader), p.get("steps_per_epoch") or len(loader))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p["lr"], total_steps=steps, pct_start=0.15)
    best, history, t0 = -1.0, [], time.time()
    for epoch in range(p["epochs"]):
        model.train()
        bar = tqdm(loader, total=min(len(loader), p.get("steps_per_epoch") or len(loader)), desc=f"{p['task']} epoch {epoch + 1}/{p['epochs']}")
        for step, (x, y) in enumerate(bar):
            if step >= bar.total:
                break
            x, y = channels_last(x.to(device)), y.to(device)
            pixel_w = torch.where(y == HARD_NEGATIVE, hard, 1.0)
            y = torch.where(y == HARD_NEGATIVE, 0, y)
            with autocast(precision, device):
                logits = model(x)
            logits = logits.float()  # the losses (softmax, Dice sums) stay in fp32
            ce = torch.nn.functional.cross_entropy(logits, y, weight=weights, reduction="none") * pixel_w
            loss = ce.sum() / (weights[y] * pixel_w).sum() + dice(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        iou = iou_per_class(evaluate(model, val_loader, n, device, precision))
        score = float(np.nanmean(iou[1:]))
        history.append({"epoch": epoch + 1, "val_iou": [None if np.isnan(v) else round(float(v), 4) for v in iou], "val_miou_fg": round(score, 4)})
        print(json.dumps(history[-1]), flush=True)
        # `select: last` when synthetic val is not what the run aims at (a fine-tune on real cracks)
        if score > best or p.get("select") == "last":
            best = score
            checkpoint.save(p["out"], model, p["model"], p["task"], p["classes"],
                            meta={"input_scale": p.get("scale", 1.0), "history": history, "train_seconds": round(time.time() - t0),
                                  "precision": precision})
    return {"best_val_miou_fg": best, "history": history}


if __name__ == "__main__":
    params, section = sys.argv[1], sys.argv[2]
    train(load_params(params, section))

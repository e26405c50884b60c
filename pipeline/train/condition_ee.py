"""Turn the trained condition classifier into a multi-exit (ZTW by default) model.

    python -m pipeline.train.condition_ee params.yaml train_condition_ee

Starts from the `train_condition` weights (the backbone-first phase of the disjoint and mixed
regimes), trains the exits in the configured regime (`ztw_loss`: see adaptive.model.ic_loss), refits
ZTW's ensembles on the validation crops when `ensemble_fit: val` (adaptive.train.fit_ensemble), then
calibrates the exit threshold on the validation crops to the configured share of the full model's FLOPs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from adaptive.model import EarlyExitClassifier, calibrate
from adaptive.train import fit_ensemble
from adaptive.train import train as train_exits
from pipeline.core import DAMAGE_STATES
from pipeline.errors import ConfigError
from pipeline.models import checkpoint
from pipeline.train.common import load_params, setup
from pipeline.train.condition import CropDataset, read_crops


def stack(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def train(p: dict) -> dict:
    fit = p.get("ensemble_fit", "train")
    if fit not in ("train", "val") or (fit == "val" and p["method"] != "ztw"):
        raise ConfigError(f"train_condition_ee.ensemble_fit: {fit!r} with method {p['method']!r}",
                          "use 'train', or 'val' with method ztw (only ZTW has ensembles to fit)")
    if p.get("ztw_loss", "ensemble") not in ("ensemble", "separate"):
        raise ConfigError(f"train_condition_ee.ztw_loss: {p['ztw_loss']!r}", "use 'ensemble' or 'separate'")
    setup(p.get("seed", 0))
    root = Path(p["data"])
    base, meta = checkpoint.load(p["init"], "condition_classification")
    args = {"num_classes": len(DAMAGE_STATES), "widths": list(base.backbone.out_channels), "exits": list(p["exits"]),
            "method": p["method"], "threshold": 1.0, "hidden": p.get("hidden", 0),
            "conv": p.get("conv", 0)}
    model = EarlyExitClassifier(**args)
    model.base.load_state_dict(base.state_dict())
    rows = read_crops(root, "train")
    if p.get("subset") and p["subset"] < len(rows):
        rows = [rows[i] for i in np.random.default_rng(0).choice(len(rows), p["subset"], replace=False)]
    loader = DataLoader(CropDataset(rows, True), batch_size=p["batch"], shuffle=True)
    train_exits(model, loader, p["regime"], p["epochs"], lr=p["lr"], backbone_epochs=0,
                ztw_loss=p.get("ztw_loss", "ensemble"))
    model.eval()
    xv, yv = stack(DataLoader(CropDataset(read_crops(root, "val"), False), batch_size=512))
    if fit == "val":
        fit_ensemble(model, xv, yv)
    with torch.no_grad():
        lps = model.log_probs(model.forward_all(xv))
    flops = model.flops_per_exit(tuple(xv.shape[1:]))
    pick = calibrate(lps, yv, flops, p["method"], target_flops=p["target_flops"])
    args["threshold"] = float(pick.get("threshold", 1.0))
    args["patience"] = int(pick.get("patience", 2))
    model.cfg.threshold, model.cfg.patience = args["threshold"], args["patience"]
    spec = {"class_path": "adaptive.model.EarlyExitClassifier", "init_args": args}
    checkpoint.save(p["out"], model, spec, "condition_classification", list(DAMAGE_STATES),
                    meta={"crop_size": meta.get("meta", {}).get("crop_size", 64), "regime": p["regime"],
                          "ztw_loss": p.get("ztw_loss", "ensemble"), "ensemble_fit": fit,
                          "calibration": pick, "flops_per_exit": flops.tolist()})
    print(f"wrote {p['out']}: {pick}")
    return pick


if __name__ == "__main__":
    train(load_params(sys.argv[1], sys.argv[2]))

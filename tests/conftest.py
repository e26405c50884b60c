"""Shared fixtures. Models here are trained for real, just tiny: a few steps on a few images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("INSPECTFLOW_THREADS", "2")

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "data" / "real"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# CUDA checks run where a GPU is; CI has none
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def tiny_params(data: Path, out: Path) -> dict:
    """The shipped params, shrunk to a couple of optimisation steps on a handful of images."""
    p = {k: dict(v) for k, v in PARAMS.items()}
    p["generate"] |= {"out": str(data), "train": 9, "val": 4, "test": 3}
    for k in ("train_components", "train_damage", "finetune_damage", "finetune_closeup", "refine_closeup", "settle_closeup",
              "temper_closeup", "train_condition"):
        p[k] |= {"data": str(data), "epochs": 1, "steps_per_epoch": 2, "batch": 4}
    p["train_components"]["out"] = str(out / "components.pt")
    p["train_damage"]["out"] = str(out / "damage_synth.pt")
    p["finetune_damage"] |= {"init": str(out / "damage_synth.pt"), "out": str(out / "damage.pt"), "real": None}
    p["finetune_closeup"] |= {"init": str(out / "damage.pt"), "out": str(out / "damage_closeup_r1.pt"), "real": None}
    p["refine_closeup"] |= {"init": str(out / "damage_closeup_r1.pt"), "out": str(out / "damage_closeup_r2.pt"), "real": None}
    p["settle_closeup"] |= {"init": str(out / "damage_closeup_r2.pt"), "out": str(out / "damage_closeup_r3.pt"), "real": None}
    p["temper_closeup"] |= {"init": str(out / "damage_closeup_r3.pt"), "out": str(out / "damage_closeup.pt"), "real": None}
    p["train_condition"]["out"] = str(out / "condition.pt")
    p["evaluate"] |= {"data": str(data), "weights": str(out), "real": str(out / "no-real-data")}
    p["train_condition_ee"] |= {"data": str(data), "init": str(out / "condition.pt"), "subset": 16, "epochs": 1,
                                "batch": 8, "out": str(out / "condition_ee.pt")}
    p["train_screen"] |= {"epochs": 1, "targets": {
        "component_condition": {"train": 32, "val": None, "out": str(out / "screen_condition.pt")},
        "damage_segmentation": {"train": 8, "val": None, "out": str(out / "screen_damage.pt")}}}
    p["train_screen_safety"] |= {"epochs": 1, "targets": {
        "safety_detector": {"train": None, "val": None, "real": None, "out": str(out / "screen_safety.pt")}}}
    sites = data.parent / "sites"
    p["generate_sites"] |= {"out": str(sites), "size": 192, "train": 8, "val": 4, "test": 4}
    p["train_safety"] |= {"data": str(sites), "epochs": 1, "imgsz": 192, "batch": 8, "out": str(out / "safety_synth.pt")}
    # the real-photo rounds form a chain, each starting from the last one's weights
    rounds = {"finetune_safety": "safety_real1.pt", "refine_safety": "safety_real2.pt", "polish_safety": "safety_real3.pt",
              "settle_safety": "safety_real4.pt", "sharpen_safety": "safety_real5.pt", "temper_safety": "safety.pt"}
    init = "safety_synth.pt"
    for name, weights in rounds.items():
        p[name] |= {"data": str(sites), "epochs": 1, "imgsz": 192, "batch": 8, "real": None,
                    "init": str(out / init), "out": str(out / weights)}
        init = weights
    p["train_damage_gate"] |= {"data": str(data), "target": str(out / "damage.pt"), "synthetic": 8, "real": None, "epochs": 1,
                               "min_px": 1, "out": str(out / "damage_gate.pt"),
                               "clips": [{"seconds": 1, "seed": 101, "intact": 0.5, "every": 6},
                                         {"seconds": 1, "seed": 106, "intact": 1.0, "every": 6, "val": True}],
                               "intact_passes": {"train": 2, "val": 1, "seconds": 1, "fps": 2, "seed": 300}}
    p["train_safety_gate"] |= {"data": str(sites), "target": str(out / "safety.pt"), "synthetic": 8, "real": None, "epochs": 1,
                               "imgsz": 192, "empty_train": 4, "empty_val": 4, "out": str(out / "safety_gate.pt")}
    return p


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """A tiny synthetic dataset, three tiny trained models, and a flow config that uses them."""
    from pipeline.synth.dataset import generate
    from pipeline.train import condition, segmentation

    base = tmp_path_factory.mktemp("tiny")
    data, weights = base / "synth", base / "weights"
    p = tiny_params(data, weights)
    generate(data, {"train": 9, "val": 4, "test": 3}, size=192, workers=1)
    segmentation.train(p["train_components"])
    segmentation.train(p["train_damage"])
    condition.train(p["train_condition"])
    flow_cfg = base / "flow.yaml"
    flow_cfg.write_text(yaml.safe_dump({
        "stages": [
            {"type": "component_segmentation", "model": str(weights / "components.pt"), "input_scale": 0.25},
            {"type": "damage_segmentation", "model": str(weights / "damage_synth.pt"), "input_scale": 0.25},
            {"type": "component_condition", "model": str(weights / "condition.pt"), "min_area": 200},
        ],
        "chunk_frames": 3, "batch_size": 2, "video": {"scale": 0.5},
    }))
    return {"base": base, "data": data, "weights": weights, "flow": flow_cfg, "params": p}


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    from pipeline.synth.video import facade_video

    out = tmp_path_factory.mktemp("clip") / "pass.mp4"
    facade_video(out, seconds=1.5, seed=3, fps=12, size=(480, 272), progress=False)
    return out


def run_cli(*args, env=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=kw.get("cwd", ROOT))


@pytest.fixture(scope="session")
def tiny_safety(tmp_path_factory) -> dict:
    """A YOLO-pose safety model really trained (one short epoch) on a few synthetic sites, and a
    site-safety flow config that uses it, plus a short synthetic site clip."""
    from pipeline.synth.site_data import generate_sites, site_video
    from pipeline.train.safety import train

    base = tmp_path_factory.mktemp("tiny_safety")
    generate_sites(base / "sites", {"train": 16, "val": 4}, size=256, seed=1, progress=False)
    weights = train({"data": str(base / "sites"), "model": "yolo11n-pose.yaml", "epochs": 1, "imgsz": 256,
                     "batch": 8, "workers": 0, "val": False, "out": str(base / "safety.pt")})
    clip = base / "site.mp4"
    site_video(clip, seconds=3, seed=2, fps=5, size=(320, 192), progress=False)
    flow_cfg = base / "site-safety.yaml"
    flow_cfg.write_text(yaml.safe_dump({
        "stages": [{"type": "safety_detector", "model": str(weights), "imgsz": 256, "conf": 0.01},
                   {"type": "hardhat_rule", "keypoint_conf": 0.0, "person_conf": 0.01, "head_conf": 0.01}],
        "chunk_frames": 6, "batch_size": 3, "video": {"scale": 0.5},
        "status": {"violation_after_s": 0.0, "clear_after_s": 0.0},
    }))
    return {"base": base, "weights": weights, "clip": clip, "flow": flow_cfg}

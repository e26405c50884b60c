"""What the screen needs from each stage it can sit beside: the model, default layers, clean
inputs from the synthetic splits, and a differentiable classifier view for the attack harness."""

from __future__ import annotations

import contextlib
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.models.preprocess import to_tensor
from pipeline.models.checkpoint import file_sha

ROOT = Path(__file__).resolve().parents[2]

# shallow to deep; each holds every sample of the batch unless an early exit took it
DEFAULT_LAYERS = {
    "component_condition": ["base.backbone.blocks.0", "base.backbone.blocks.1", "base.backbone.blocks.2", "base.backbone.blocks.3"],
    "damage_segmentation": ["encoder.model.blocks.1", "encoder.model.blocks.2", "encoder.model.blocks.4", "encoder.model.blocks.6"],
    # a YOLO11 backbone: two C3k2 blocks before the 'nothing here' gate (layer 4), one after, and C2PSA
    "safety_detector": ["model.2", "model.4", "model.6", "model.10"],
}
CONFIGS = {
    "component_condition": ROOT / "stages" / "configs" / "component_condition.yaml",
    "damage_segmentation": ROOT / "stages" / "configs" / "damage_segmentation.yaml",
    "safety_detector": ROOT / "stages" / "configs" / "safety_detector.yaml",
}
ATTACKABLE = ("component_condition", "damage_segmentation")  # targets the attack harness has a classifier view of


def fingerprint(stage) -> dict:
    """Identifies the weights a screen was trained on; the screen stage refuses any other."""
    return {"stage": stage.type_name, "weights": Path(stage.cfg.model).name, "sha": file_sha(stage.cfg.model)}


@contextlib.contextmanager
def full_depth(model: nn.Module):
    """Early exits off, so every screened layer sees every sample (training and the harness)."""
    # a gated YOLO keeps its gate (adaptive.gate.YoloGate) beside it; a gated segmenter is its own
    gate = getattr(model, "exit_gate", None) or (model if getattr(model, "gate", None) is not None else None)
    if gate is not None:  # nothing stops at the gate
        old_thr, gate.threshold = gate.threshold, 0.0
        try:
            yield model
        finally:
            gate.threshold = old_thr
        return
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "threshold"):
        yield model
        return
    old = (cfg.threshold, cfg.patience)
    cfg.threshold, cfg.patience = 2.0, 10**9
    try:
        yield model
    finally:
        cfg.threshold, cfg.patience = old


class FinalLogits(nn.Module):
    """The last exit's log-probabilities with gradients (EarlyExitModel.infer has none)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        if hasattr(self.model, "forward_all"):
            return self.model.log_probs(self.model.forward_all(x))[-1]
        return self.model(x)


class DamagePresence(nn.Module):
    """A segmenter seen as a two-class classifier, "no damage" vs "damage": the logit is the mean
    damage-vs-background margin of the most damage-like pixels. Attacks on it try to hide damage."""

    def __init__(self, seg: nn.Module, top: float = 0.01):
        super().__init__()
        self.seg, self.top = seg, top

    def forward(self, x):
        lg = self.seg(x)
        margin = (torch.logsumexp(lg[:, 1:], 1) - lg[:, 0]).flatten(1)
        k = max(1, int(self.top * margin.shape[1]))
        s = margin.topk(k, 1).values.mean(1)
        return torch.stack([-s / 2, s / 2], 1)


def _crops(root: Path, split: str, limit: int | None, seed: int = 0) -> np.ndarray:
    from pipeline.train.condition import read_crops

    rows = read_crops(root, split)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(rows))[:limit] if limit else np.arange(len(rows))
    return np.stack([cv2.imread(str(rows[i][0])) for i in idx])


def _facades(root: Path, split: str, limit: int | None, scale: float, seed: int = 0) -> np.ndarray:
    files = sorted((root / "images" / split).glob("*.jpg"))
    rng = np.random.default_rng(seed)
    files = [files[i] for i in rng.permutation(len(files))[:limit]] if limit else files
    return np.stack([cv2.resize(cv2.imread(str(f)), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in files])


def _site_images(root: Path, split: str, limit: int | None, real: Path | None, seed: int = 0) -> list[np.ndarray]:
    """Synthetic site frames, plus the real hard-hat photos of the same split when `real` holds them:
    the shipped detector is fine-tuned on both, so both are clean input to it."""
    files = sorted((root / "images" / split).glob("*.jpg"))
    if real is not None:
        files += sorted((Path(real) / "hardhat_workers" / "images" / split).glob("*.jpg"))
    rng = np.random.default_rng(seed)
    files = [files[i] for i in rng.permutation(len(files))[:limit]] if limit else files
    return [im for f in files if (im := cv2.imread(str(f))) is not None]


class Target:
    def __init__(self, kind: str, config: str | Path | dict | None = None, real: str | Path | None = None,
                 data: str | Path | None = None):
        from stages import load_stage

        if kind not in CONFIGS:
            raise ValueError(f"no screen target {kind!r}; use one of {sorted(CONFIGS)}")
        from pipeline.config import load_yaml

        self.kind = kind
        if isinstance(config, dict):  # an inline stage spec
            spec, base = dict(config), None
        else:
            path = Path(config or CONFIGS[kind])
            spec, base = load_yaml(path), path.parent
        if "runtime" in spec:
            spec["runtime"] = "torch"  # the attack harness needs gradients; ONNX Runtime's float activations are the same
        if "precision" in spec:  # screens learn the float model; an 8-bit target gets a table of its own (train/screen_int8.py)
            spec["precision"] = "fp32"
        self.stage = load_stage(spec, base)
        self.layers = DEFAULT_LAYERS[kind]
        self.real = Path(real) if real and (Path(real) / "hardhat_workers").exists() else None
        # the generated dataset the clean inputs come from: facades, or sites for the detector
        self.data = Path(data) if data else ROOT / "data" / ("sites" if kind == "safety_detector" else "synth")

    @property
    def model(self) -> nn.Module:
        return self.stage.model  # asked each time: a YOLO stage's running network changes once its predictor exists

    @property
    def input_size(self) -> int:
        return 64 if self.kind == "component_condition" else 192

    def images(self, split: str, limit: int | None = None, seed: int = 0) -> np.ndarray:
        """Clean BGR uint8 inputs at the size the model sees in the flow."""
        if self.kind == "component_condition":
            return _crops(self.data, split, limit, seed)
        if self.kind == "safety_detector":
            return _site_images(self.data, split, limit, self.real, seed)
        return _facades(self.data, split, limit, self.stage._scale(), seed)

    def resize(self, images: list[np.ndarray]) -> np.ndarray:
        if self.kind == "safety_detector":
            return list(images)  # any size: the detector letterboxes
        s = self.input_size
        return np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in images])

    def tensors(self, images, batch: int = 64):
        """Batches for `run`: tensors, or for a YOLO target lists of BGR images (its predictor letterboxes them)."""
        for i in range(0, len(images), batch):
            yield list(images[i : i + batch]) if self.kind == "safety_detector" else to_tensor(list(images[i : i + batch]))

    def run(self, x):
        if self.kind == "safety_detector":  # the stage's own backend, so the input goes through ultralytics' preprocessing
            return self.stage.backend(x, track=False)
        return self.model(x)

    def classifier(self) -> nn.Module:
        if self.kind not in ATTACKABLE:
            raise ValueError(f"the attack harness has no classifier view of {self.kind}; it attacks {', '.join(ATTACKABLE)}")
        return FinalLogits(self.model) if self.kind == "component_condition" else DamagePresence(self.model)

"""Condition estimation: each structural component is cropped (min-area rectangle warped to a
square, as in IC-SHM P2) and classified none/light/moderate/severe.

The model is whatever the checkpoint names; anything called as `model(x) -> logits` works,
so an early-exit model from `adaptive/` drops in through the YAML alone."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torchvision.ops import box_iou

from pipeline.components import crop_rect, extract_components
from pipeline.core import DAMAGEABLE, Component, FrameResult
from pipeline.errors import ConfigError
from pipeline.models.preprocess import to_tensor
from stages.base import Stage, StageConfig, register


class ConditionConfig(StageConfig):
    min_area: int = Field(400, ge=1, description="components smaller than this (px) are ignored")
    batch_size: int = Field(64, ge=1, le=1024)
    exit_threshold: float | None = Field(None, gt=0, le=1, description="early-exit models only: exit confidence; "
                                         "lower is faster, 1.0 runs every crop to the end. Default: the calibrated one")
    carry_iou: float | None = Field(None, gt=0, le=1, description="with frame reuse on a moving camera: a component "
                                    "whose box, shifted by the camera's motion, overlaps one of the last computed frame's "
                                    "(same class) at least this much keeps that one's state instead of being classified. "
                                    "None classifies every component")
    carry_max: int = Field(1, ge=1, le=10, description="a state is carried at most this many computed frames in a row")


@register
class ComponentCondition(Stage):
    type_name = "component_condition"
    task = "condition_classification"
    Config = ConditionConfig
    inputs = ("image", "component_mask", "damage_mask")
    outputs = ("components",)

    def __init__(self, cfg: ConditionConfig):
        super().__init__(cfg)
        self.exits = None  # crops per exit, for the run summary (early-exit models only)
        self.n_carried = 0
        self.reset()
        if hasattr(self.model, "infer"):
            self.exits = np.zeros(self.model.n_exits, np.int64)
            flops = self.meta.get("meta", {}).get("flops_per_exit")
            self.flops = np.asarray(flops, float) if flops else None
        if cfg.exit_threshold is not None:
            if not hasattr(self.model, "infer"):
                if "exit_threshold" not in cfg.model_fields_set:
                    return  # a budget preset's threshold means nothing to a single-exit model
                raise ConfigError(f"exit_threshold is set, but {cfg.model} is not an early-exit model",
                                  "remove exit_threshold, or point `model:` at an early-exit checkpoint (condition_ee.pt)")
            self.model.cfg.threshold = cfg.exit_threshold

    def process(self, batch: list[FrameResult]) -> None:
        size = int(self.meta.get("meta", {}).get("crop_size", 64))
        crops, owners, carried = [], [], []
        self.last_owners: list[int] = []  # batch position of each crop, in forward order (for a screen)
        for k, r in enumerate(batch):
            r.components, _ = extract_components(r.component_mask, r.damage_mask, self.cfg.min_area)
            cur = [c for c in r.components if c.class_id in DAMAGEABLE]
            carry = self.cfg.carry_iou and r.motion is not None and cur and self._prev
            ages = {}
            for c, src in zip(cur, _carry_sources(cur, self._prev, r.motion, self.cfg.carry_iou) if carry else [None] * len(cur)):
                if src is not None and self._ages.get(id(src), 0) < self.cfg.carry_max:
                    carried.append((c, src))  # resolved after inference: src may be classified in this batch
                    ages[id(c)] = self._ages.get(id(src), 0) + 1
                    continue
                crops.append(crop_rect(r.frame.image, c.rect, size))
                owners.append(c)
                self.last_owners.append(k)
            self._prev, self._ages = cur, ages
        self.n_carried += len(carried)
        with torch.inference_mode():
            for i in range(0, len(crops), self.cfg.batch_size):
                x = to_tensor(crops[i : i + self.cfg.batch_size]).to(self.cfg.device)
                probs = torch.softmax(self.model(x), 1).cpu()
                if self.exits is not None:
                    self.exits += np.bincount(self.model.last_exit.cpu().numpy(), minlength=len(self.exits))
                for c, p in zip(owners[i : i + self.cfg.batch_size], probs):
                    c.state, c.state_scores = int(p.argmax()), [round(float(v), 4) for v in p]
        for c, src in carried:  # in frame order, so a chain of carries reads states already set
            c.state, c.state_scores = src.state, src.state_scores

    def reset(self) -> None:
        """A new run carries nothing from the last one."""
        self._prev, self._ages = [], {}

    def counters(self) -> dict[str, float]:
        """Crops per exit and the FLOPs they cost, as shares of running every crop to the end; states carried."""
        out = {"carried": self.n_carried} if self.n_carried else {}
        if self.exits is None or not self.exits.sum():
            return out
        out |= {f"exit_{i}": int(n) for i, n in enumerate(self.exits)}
        if self.flops is not None:
            out["flops"] = float(self.exits @ self.flops)
            out["flops_full"] = float(self.exits.sum() * self.flops[-1])
        return out


def _carry_sources(cur: list[Component], prev: list[Component], motion: tuple[float, float],
                   min_iou: float) -> list[Component | None]:
    """For each component, the last computed frame's component of its class whose box, moved by the
    camera's motion, overlaps its box the most, if by at least `min_iou`."""
    dx, dy = motion
    iou = box_iou(torch.tensor([c.box for c in cur], dtype=torch.float32),
                  torch.tensor([p.box for p in prev], dtype=torch.float32) + torch.tensor([dx, dy, dx, dy]))
    iou[torch.tensor([c.class_id for c in cur])[:, None] != torch.tensor([p.class_id for p in prev])[None]] = 0
    best, idx = iou.max(1)
    return [prev[j] if v >= min_iou else None for v, j in zip(best.tolist(), idx.tolist())]

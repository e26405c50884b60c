"""Semantic segmentation stages: structural components and damage (crack, spall, rebar)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from pipeline.core import COMPONENT_CLASSES, DAMAGE_CLASSES, FrameResult
from pipeline.models.checkpoint import file_sha
from pipeline.models.onnx import OnnxForward, use_onnxruntime
from pipeline.models.preprocess import to_tensor
from stages.base import Stage, StageConfig, register


class SegmentationConfig(StageConfig):
    input_scale: float | None = Field(None, gt=0, le=4, description="frame resize before the model; default: the scale it was trained at")
    tile: int = Field(768, ge=64, description="larger (scaled) frames are cut into tiles of this size")
    overlap: int = Field(32, ge=0)
    tta: list[Literal["hflip", "vflip", "transpose", "rot180"]] = Field(
        [], description="test-time flips, 180-degree turn or transpose, averaged with the plain pass: one more forward "
        "each. On real crack close-ups they add 3-5 points of crack IoU (benchmarks/real_cracks.py); drone frames skip "
        "them for speed")
    runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="what runs the model: torch, or ONNX Runtime on the CPU (exported once and cached; "
        "~1.5x faster for the damage segmenter, same masks: benchmarks/stage_costs.py)")
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="int8 (with `runtime: onnxruntime`): convolutions on 8-bit integers, calibrated on synthetic "
        "facade frames once per input size and cached; inputs of a size seen fewer than 3 times run in float. On this "
        "machine's CPU (AVX-512 VNNI) 1.3-1.5x faster on 720p frames, IoU within 0.006 per class (benchmarks/int8.py)")
    class_bias: dict[str, float] = Field(
        {}, description="added to a class's logit before the argmax, by class name (e.g. {crack: 0.5}): above 0 the "
        "class is called more often (more recall, less precision), below 0 less often")
    min_area: dict[str, int] = Field(
        {}, description="by class name (e.g. {crack: 20}): a connected piece of that class smaller than this many "
        "pixels, at the image's own size, becomes background; drops specks a surface's pores and scratches leave")

    class_names: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _per_class_options_name_classes(self):
        for key in ("class_bias", "min_area"):
            unknown = sorted(set(getattr(self, key)) - set(self.class_names))
            if unknown:
                raise ValueError(f"{key} names {', '.join(map(repr, unknown))}, which is not a class here: "
                                 f"use {', '.join(self.class_names[1:])} (or background)")
        if any(v < 0 for v in self.min_area.values()):
            raise ValueError("min_area takes pixel counts of 0 or more")
        return self

    @model_validator(mode="after")
    def _runtime_fits(self):
        if self.runtime == "onnxruntime" and self.device != "cpu":
            raise ValueError(f"`runtime: onnxruntime` runs on the CPU, not {self.device!r}: set `device: cpu`, "
                             "or `runtime: torch` to use the accelerator")
        if self.precision == "int8" and self.runtime != "onnxruntime":
            raise ValueError("`precision: int8` runs through ONNX Runtime: set `runtime: onnxruntime` (CPU), "
                             "or `precision: fp32`")
        return self


class ComponentConfig(SegmentationConfig):
    class_names: ClassVar[tuple[str, ...]] = COMPONENT_CLASSES


class DamageConfig(SegmentationConfig):
    class_names: ClassVar[tuple[str, ...]] = DAMAGE_CLASSES
    gate: Path | None = Field(None, description="'nothing here' gate weights (`dvc repro train_damage_gate`): "
                              "an input (frame or tile) with no damage-like cell stops after an early block")
    gate_threshold: float | None = Field(None, ge=0, le=1, description="cell probability an input needs to run on; "
                                         "default: the calibrated one; 0 runs everything")

    @model_validator(mode="after")
    def _gate_runs_in_torch(self):
        if self.gate is not None and self.runtime == "onnxruntime":
            raise ValueError("the `gate:` exit runs the encoder block by block in torch, which `runtime: onnxruntime` "
                             "cannot: remove `gate:`, or set `runtime: torch`")
        return self


def pad_to_multiple(x: torch.Tensor, mult: int = 32) -> tuple[torch.Tensor, int, int]:
    """Reflect-padded on the right and bottom to a multiple of `mult`; also the original (h, w)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % mult, (-w) % mult
    # reflection needs more pixels than it pads: an image (or scaled image) a few pixels across is repeated instead
    mode = "reflect" if ph < h and pw < w else "replicate"
    return (F.pad(x, (0, pw, 0, ph), mode=mode) if ph or pw else x), h, w


def _starts(n: int, tile: int, overlap: int) -> list[int]:
    if n <= tile:
        return [0]
    step = tile - overlap
    s = list(range(0, n - tile, step))
    return s + [n - tile]


_TTA = {"hflip": lambda t: t.flip(-1), "vflip": lambda t: t.flip(-2), "transpose": lambda t: t.transpose(-1, -2),
        "rot180": lambda t: t.flip(-1, -2)}


def _facade_inputs(size: tuple[int, int]) -> list[np.ndarray]:
    """Calibration inputs for an 8-bit graph: synthetic facade frames, as the model sees them."""
    from pipeline.models.int8 import facade_frames

    return [to_tensor(f).numpy() for f in facade_frames(*size)]


def _labels(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Class ids. `max(dim).indices` equals `argmax(dim)` (first index on ties), but on CPU argmax over the
    channels of an NCHW tensor runs ~14x slower (140 ms for 4 frames of 640x384: a third of the model's time)."""
    return logits.max(dim).indices


@contextmanager
def _unrecorded(model: torch.nn.Module):
    """Extra test-time passes are not inputs: a screen tapping the model skips them (pipeline/screen/taps.py)."""
    model.tap_skip = True
    try:
        yield
    finally:
        model.tap_skip = False


def _drop_small(mask: np.ndarray, min_area: dict[int, int]) -> np.ndarray:
    """Pieces (8-connected) of each class id smaller than its min_area become background (0)."""
    for c, a in min_area.items():
        n, lab, st, _ = cv2.connectedComponentsWithStats((mask == c).astype(np.uint8), connectivity=8)
        small = np.flatnonzero(st[1:, cv2.CC_STAT_AREA] < a) + 1
        if len(small):
            mask = mask.copy()
            mask[np.isin(lab, small)] = 0
    return mask


class SegmentationStage(Stage):
    Config = SegmentationConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.n_inputs = self.n_gated = 0
        if cfg.runtime == "onnxruntime":  # device and gate were checked with the config
            use_onnxruntime(self.model, file_sha(self.require_model()),
                            calibrate=_facade_inputs if cfg.precision == "int8" else None)
        names = type(cfg).class_names
        self.bias = torch.tensor([float(cfg.class_bias.get(c, 0.0)) for c in names]) if cfg.class_bias else None
        self.min_area = {names.index(c): a for c, a in cfg.min_area.items() if a > 0}

    def prepare(self) -> None:
        """Export and open the ONNX model now, with the blocks screens have hooked by now, rather than
        inside the first batch."""
        fwd = self.model.forward
        if isinstance(fwd, OnnxForward):
            fwd.prepare()

    def _scale(self) -> float:
        return self.cfg.input_scale or float(self.meta.get("meta", {}).get("input_scale", 1.0))

    @torch.inference_mode()
    def _logits(self, imgs: list[np.ndarray]) -> torch.Tensor:
        x, h, w = pad_to_multiple(to_tensor(imgs).to(self.cfg.device))
        if self.cfg.runtime == "torch":  # ONNX Runtime takes NCHW: converting would be a copy each way
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        self.n_inputs += len(imgs)
        if getattr(self.model, "gate", None) is not None:
            self.n_gated += int((self.model.last_exit == 0).sum())
        if self.cfg.tta:
            with _unrecorded(self.model):
                for t in self.cfg.tta:
                    out = out + _TTA[t](self.model(_TTA[t](x)))  # each of these is its own inverse
            out = out / (1 + len(self.cfg.tta))
        if self.bias is not None:  # per input, so overlapping tiles, whose logits add up, add it as often
            out = out + self.bias.to(out)[:, None, None]
        return out[..., :h, :w]

    def counters(self) -> dict[str, float]:
        return {"inputs": self.n_inputs, "gated": self.n_gated} if self.n_inputs else {}

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Class-id masks at each image's own size."""
        s = self._scale()
        scaled = [img if s == 1 else cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for img in images]
        out = []
        # which image each model input came from, in forward order (read by a screen stage)
        self.last_owners: list[int] = []
        same = len({im.shape for im in scaled}) == 1
        t, ov = self.cfg.tile, self.cfg.overlap
        if same and max(scaled[0].shape[:2]) <= t:
            for i in range(0, len(scaled), self.cfg.batch_size):
                out += list(_labels(self._logits(scaled[i : i + self.cfg.batch_size]), 1).byte().cpu().numpy())
                self.last_owners += list(range(i, min(i + self.cfg.batch_size, len(scaled))))
        else:
            for k, img in enumerate(scaled):
                H, W = img.shape[:2]
                acc = None
                # overlapping tiles: logits are summed where tiles meet, so seams do not show
                for y in _starts(H, t, ov):
                    for x in _starts(W, t, ov):
                        lg = self._logits([img[y : y + t, x : x + t]])[0]
                        self.last_owners.append(k)
                        if acc is None:
                            acc = torch.zeros((lg.shape[0], H, W))
                        acc[:, y : y + lg.shape[1], x : x + lg.shape[2]] += lg.cpu()
                out.append(_labels(acc, 0).byte().numpy())
        out = [m if m.shape[:2] == im.shape[:2] else cv2.resize(m, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_NEAREST)
               for m, im in zip(out, images)]
        return [_drop_small(m, self.min_area) for m in out] if self.min_area else out

    def process(self, batch: list[FrameResult]) -> None:
        for r, m in zip(batch, self.predict([r.frame.image for r in batch])):
            setattr(r, self.outputs[0], m)


@register
class ComponentSegmentation(SegmentationStage):
    """Wall, beam, column, window frame, window pane, balcony, slab."""

    type_name = "component_segmentation"
    task = "component_segmentation"
    outputs = ("component_mask",)
    Config = ComponentConfig


@register
class DamageSegmentation(SegmentationStage):
    """Crack, spalling, exposed rebar."""

    type_name = "damage_segmentation"
    task = "damage_segmentation"
    outputs = ("damage_mask",)
    Config = DamageConfig

    def __init__(self, cfg: DamageConfig):
        super().__init__(cfg)
        if cfg.gate is not None:
            from adaptive.gate import GatedSegmenter, load_gate

            gate, block, thr = load_gate(cfg.gate, cfg.model, cfg.gate_threshold, "dvc repro train_damage_gate")
            self.model = GatedSegmenter(self.model, gate.to(cfg.device, memory_format=torch.channels_last), block, thr)

""""Nothing here" exits for dense models: a small head on an early block says, per cell of that
block's feature map, whether anything of interest is there. An input where no cell clears the
threshold stops at that block and gets an empty answer; the rest of the batch runs on.

`CellGate` is the plain head. `GatedSegmenter` runs an smp segmentation model whose encoder is a
timm MobileNet/EfficientNet (blocks run one by one), stopping gated inputs after block `block`.
It keeps the segmentation model's module names (`encoder.model.blocks.1` ...), so activation
taps written for the plain model (pipeline.screen) attach unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import ConfigError, WeightsError
from pipeline.models import checkpoint

TASK = "damage_gate"


class CellGate(nn.Module):
    """Per-cell logits that something of interest lies in the cell."""

    def __init__(self, in_channels: int, hidden: int = 32):
        super().__init__()
        # GroupNorm, not BatchNorm: it trains one whole frame at a time, a batch of one
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.GroupNorm(4, hidden), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


def blocks_of(seg: nn.Module) -> nn.Module:
    """The timm feature extractor inside an smp encoder, checked to run block by block."""
    fm = getattr(getattr(seg, "encoder", None), "model", None)
    if fm is None or not all(hasattr(fm, a) for a in ("conv_stem", "bn1", "blocks", "_stage_out_idx")):
        raise ConfigError("a damage gate needs an smp model with a timm MobileNet/EfficientNet encoder "
                          f"(got {type(getattr(seg, 'encoder', seg)).__name__})",
                          "remove `gate:` from the stage config, or train the segmenter with such an encoder")
    return fm


def features_until(fm: nn.Module, x: torch.Tensor, block: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The encoder's outputs up to and including `block`: (features collected so far, block output)."""
    h = fm.act1(fm.bn1(fm.conv_stem(x)))
    feats = [h] if 0 in fm._stage_out_idx else []
    for i in range(block + 1):
        h = fm.blocks[i](h)
        if i + 1 in fm._stage_out_idx:
            feats.append(h)
    return feats, h


class GatedSegmenter(nn.Module):
    def __init__(self, seg: nn.Module, gate: CellGate, block: int, threshold: float):
        super().__init__()
        fm = blocks_of(seg)
        if not 0 <= block < len(fm.blocks):
            raise ConfigError(f"gate block {block} does not exist: the encoder has blocks 0..{len(fm.blocks) - 1}",
                              "retrain the gate (`dvc repro train_damage_gate`) with an existing block")
        # the segmenter's own children, under their own names
        self.encoder, self.decoder, self.segmentation_head = seg.encoder, seg.decoder, seg.segmentation_head
        self.gate, self.block, self.threshold = gate, block, threshold
        self.last_exit: torch.Tensor | None = None  # 0: stopped at the gate, 1: ran to the end
        self.last_gate: torch.Tensor | None = None  # each input's highest cell probability

    @property
    def fm(self) -> nn.Module:
        return self.encoder.model  # not a child of its own: module names must stay the segmenter's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fm, n = self.fm, x.shape[0]
        feats, h = features_until(fm, x, self.block)
        p = torch.sigmoid(self.gate(h)).flatten(1).amax(1)
        keep = p >= self.threshold
        self.last_gate, self.last_exit = p, keep.long()
        # an empty answer: background everywhere
        out = torch.zeros((n, self.segmentation_head[0].out_channels, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        out[:, 0] = 1.0
        if keep.any():
            idx = torch.nonzero(keep).flatten()
            xs, h = x[idx], h[idx]
            feats = [f[idx] for f in feats]
            for i in range(self.block + 1, len(fm.blocks)):
                h = fm.blocks[i](h)
                if i + 1 in fm._stage_out_idx:
                    feats.append(h)
            out[idx] = self.segmentation_head(self.decoder([xs] + feats))
        return out


def load_gate(path, target, threshold: float | None, retrain: str) -> tuple[CellGate, int, float]:
    """A trained gate head for the model in weights file `target`: (head, block it follows, threshold).
    `threshold` None takes the calibrated one. Gate weights trained on another model are refused:
    their cells would read activations they never saw."""
    from pathlib import Path

    fix = f"run `{retrain}`, or remove `gate:` from the stage config"
    ckpt = checkpoint.read_task(path, TASK, "gate", fix, "point `gate:` at data/weights/damage_gate.pt or safety_gate.pt")
    if ckpt["target"]["sha"] != checkpoint.file_sha(target):
        raise WeightsError(f"gate {Path(path).name} was trained for {ckpt['target']['weights']}, not {Path(target).name}",
                           f"retrain it: {fix}")
    gate = CellGate(**ckpt["args"])
    gate.load_state_dict(ckpt["state_dict"])
    return gate.eval(), ckpt["block"], ckpt["threshold"] if threshold is None else threshold


def _rows(obj, idx: torch.Tensor):
    """`obj` (tensor, or nested list/tuple/dict of tensors) restricted to batch rows `idx`."""
    if torch.is_tensor(obj):
        return obj[idx]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_rows(o, idx) for o in obj)
    if isinstance(obj, dict):
        return {k: _rows(v, idx) for k, v in obj.items()}
    return obj


def _scatter(like, sub, idx: torch.Tensor, n: int):
    """A zero-filled batch of `n` shaped like `like`, with `sub` written into rows `idx`."""
    if torch.is_tensor(like):
        out = like.new_zeros((n, *like.shape[1:]))
        if sub is not None:
            out[idx] = sub
        return out
    if isinstance(like, (list, tuple)):
        return type(like)(_scatter(l, None if sub is None else s, idx, n) for l, s in zip(like, sub if sub is not None else like))
    if isinstance(like, dict):
        return {k: _scatter(v, None if sub is None else sub[k], idx, n) for k, v in like.items()}
    return like


class _Counts(dict):
    """Totals that every copy of a gate adds to: ultralytics deep-copies the model it predicts with,
    and the gate, bound to the model's forward, is copied along."""

    def __deepcopy__(self, memo):
        return self


class YoloGate:
    """Puts a `CellGate` after layer `layer` of an ultralytics YOLO, without touching the model's
    code: the network's own forward (`_predict_once`) is replaced on this instance (and so on the
    copies ultralytics' predictors make of it). Inputs whose cells all stay under the threshold return
    all-zero predictions, which ultralytics' NMS turns into "no detections", so predictors, trackers
    and result objects work unchanged."""

    def __init__(self, yolo, gate: CellGate, layer: int, threshold: float):
        n_layers = len(yolo.model.model)
        if not 0 <= layer < n_layers - 1:
            raise ConfigError(f"gate layer {layer} does not exist: the detector has layers 0..{n_layers - 2} before its head",
                              "retrain the gate with an existing layer")
        self.model, self.gate, self.layer = yolo.model, gate, layer
        self.gate_device = next(gate.parameters()).device
        self.shapes: dict[tuple, object] = {}  # input size -> one full output, to shape empty answers
        self.counts = _Counts(inputs=0, gated=0, threshold=threshold)
        yolo.model._predict_once = self._predict_once
        yolo.model.exit_gate = self  # lets a screen run the model full depth while it trains

    @property
    def threshold(self) -> float:
        return self.counts["threshold"]

    @threshold.setter
    def threshold(self, v: float) -> None:
        self.counts["threshold"] = v  # shared, so copies inside predictors follow

    @property
    def n_inputs(self) -> int:
        return self.counts["inputs"]

    @property
    def n_gated(self) -> int:
        return self.counts["gated"]

    def _predict_once(self, x, profile=False, embed=None, **_):
        m_all, n = self.model, x.shape[0]
        size, y, idx = tuple(x.shape[1:]), [], None
        # which inputs went on past the gate (1) or stopped (0), as early-exit models report it, so a
        # screen tapping later layers knows whose activations they hold; None when all went on
        m_all.last_exit = None
        for m in m_all.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in m_all.save else None)
            if m.i == self.layer:
                if self.gate_device != x.device:  # ultralytics moves its copy of the network, not the gate
                    self.gate.to(x.device)
                    self.gate_device = x.device
                p = torch.sigmoid(self.gate(x)).flatten(1).amax(1)
                keep = p >= self.threshold
                self.counts["inputs"] += n
                self.counts["gated"] += int((~keep).sum())
                if keep.all() or size not in self.shapes:
                    continue  # nothing to skip, or the first input of this size: learn the output's shape
                idx = torch.nonzero(keep).flatten()
                m_all.last_exit = keep.long()
                if len(idx) == 0:
                    return _scatter(self.shapes[size], None, idx, n)
                x, y = x[idx], [None if t is None else t[idx] for t in y]
        if idx is not None:
            return _scatter(self.shapes[size], x, idx, n)
        self.shapes.setdefault(size, _rows(x, torch.arange(0)))
        return x

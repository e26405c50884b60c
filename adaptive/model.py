"""Early-exit classifiers on a block backbone: SDN, PBEE and Zero Time Waste behind one interface.

The base model is any module with `backbone.blocks` (run in order), `backbone.out_channels` and a
final `head`, like `adaptive.backbone.Classifier`; ICs attach after chosen blocks and the
backbone is not rewritten. Inference is batched and each sample exits on its own: the batch
shrinks as samples leave.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from adaptive.heads import GeometricEnsemble, ICHead
from pipeline.errors import ConfigError


class ExitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["sdn", "pbee", "ztw"] = "ztw"
    exits: list[int] = Field(min_length=1, description="blocks (0-based) followed by an IC; the final head is the last exit")
    threshold: float = Field(0.9, gt=0, le=1, description="sdn/ztw: exit when the max probability reaches this")
    patience: int = Field(2, ge=1, description="pbee: exit after this many consecutive ICs agree")
    hidden: int = Field(0, ge=0, description="IC hidden width; 0 = linear ICs")
    conv: int = Field(0, ge=0, description="channels of a separable conv in each IC before pooling; 0 = pool the block as is")


class EarlyExitModel(nn.Module):
    def __init__(self, base: nn.Module, num_classes: int, cfg: ExitConfig):
        super().__init__()
        n_blocks = len(base.backbone.blocks)
        bad = [e for e in cfg.exits if not 0 <= e < n_blocks - 1]
        if bad or len(set(cfg.exits)) != len(cfg.exits) or cfg.exits != sorted(cfg.exits):
            raise ConfigError(f"exit blocks {cfg.exits}: {bad or 'not strictly increasing'} cannot hold an IC",
                              f"use increasing block indices in 0..{n_blocks - 2}; block {n_blocks - 1} feeds the final head")
        self.base, self.cfg, self.num_classes = base, cfg, num_classes
        ch = base.backbone.out_channels
        self.ics = nn.ModuleList(ICHead(ch[e], num_classes, cascade=cfg.method == "ztw", hidden=cfg.hidden,
                                       conv=cfg.conv)
                                 for e in cfg.exits)
        self.ensemble = GeometricEnsemble(len(cfg.exits) + 1, num_classes) if cfg.method == "ztw" else None

    @property
    def n_exits(self) -> int:
        return len(self.cfg.exits) + 1

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw logits of every IC and of the final head, computing the whole backbone."""
        out, prev = [], None
        exits = {e: i for i, e in enumerate(self.cfg.exits)}
        for b, block in enumerate(self.base.backbone.blocks):
            x = block(x)
            if b in exits:
                prev = self.ics[exits[b]](x, prev)
                out.append(prev)
        out.append(self.base.head(x))
        return out

    def log_probs(self, logits: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-exit log-probabilities: ZTW's ensembles, or each head alone."""
        if self.ensemble is not None:
            return self.ensemble(logits)
        return [torch.log_softmax(z, 1) for z in logits]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities with early exits, so a stage can call `model(x)` like any classifier."""
        return self.infer(x)[0]

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probs [N, C], exit index [N]); samples leave the batch as soon as they are sure."""
        n = x.shape[0]
        out = torch.zeros(n, self.num_classes, dtype=x.dtype, device=x.device)
        where = torch.full((n,), self.n_exits - 1, dtype=torch.long, device=x.device)
        alive = torch.arange(n, device=x.device)
        exits = {e: i for i, e in enumerate(self.cfg.exits)}
        prev, logps, run, last_pred = None, [], torch.zeros(n, dtype=torch.long, device=x.device), None
        # per exit, the log-probs of the samples that reached it (in batch order): a screen reads them
        self.last_log_probs = []
        for b, block in enumerate(self.base.backbone.blocks):
            x = block(x)
            if b not in exits:
                continue
            m = exits[b]
            prev = self.ics[m](x, prev)
            if self.ensemble is not None:
                logps.append(torch.log_softmax(prev, 1))
                lp = self.ensemble.member(m, logps)
            else:
                lp = torch.log_softmax(prev, 1)
            self.last_log_probs.append(lp)
            if self.cfg.method == "pbee":
                pred = lp.argmax(1)
                # how many ICs in a row, ending here, predict the same class
                run = torch.where(pred == last_pred, run + 1, 1) if last_pred is not None else torch.ones_like(pred)
                last_pred = pred
                done = run >= self.cfg.patience
            else:
                # threshold 1.0 means "never exit early", even where float32 saturates to p = 1
                done = lp.exp().amax(1) >= self.cfg.threshold if self.cfg.threshold < 1 else torch.zeros_like(run, dtype=torch.bool)
            if done.any():
                out[alive[done]], where[alive[done]] = lp[done], m
                keep = ~done
                alive, x, prev, run = alive[keep], x[keep], prev[keep], run[keep]
                logps = [t[keep] for t in logps]
                last_pred = last_pred[keep] if last_pred is not None else None
            if len(alive) == 0:
                self.last_exit = where  # lets an activation tap (pipeline.screen) map block outputs to samples
                return out, where
        final = self.base.head(x)
        if self.ensemble is not None:
            logps.append(torch.log_softmax(final, 1))
            lp = self.ensemble.member(self.n_exits - 1, logps)
        else:
            lp = torch.log_softmax(final, 1)
        out[alive] = lp
        self.last_log_probs.append(lp)
        self.last_exit = where
        return out, where

    def flops_per_exit(self, input_shape: tuple[int, ...]) -> np.ndarray:
        """Cumulative FLOPs (torch's flop counter) to reach each exit, one sample, heads included."""
        from torch.utils.flop_counter import FlopCounterMode

        def count(fn):
            with FlopCounterMode(display=False) as fc:
                fn()
            return fc.get_total_flops()

        exits = {e: i for i, e in enumerate(self.cfg.exits)}
        x, prev, total, cum = torch.zeros(1, *input_shape), None, 0, []
        with torch.no_grad():
            for b, block in enumerate(self.base.backbone.blocks):
                total += count(lambda: block(x))
                x = block(x)
                if b in exits:
                    ic = self.ics[exits[b]]
                    total += count(lambda: ic(x, prev))
                    prev = ic(x, prev)
                    cum.append(total)
            total += count(lambda: self.base.head(x))
        cum.append(total)
        return np.array(cum, float)


def simulate(log_probs: list[torch.Tensor], method: str, threshold: float = 0.9, patience: int = 2) -> np.ndarray:
    """Exit index per sample from precomputed per-exit log-probs (for curves and calibration)."""
    p = torch.stack([lp.exp() for lp in log_probs])  # E, N, C
    n_exits, n = p.shape[0], p.shape[1]
    where = np.full(n, n_exits - 1)
    undecided = np.ones(n, bool)
    if method == "pbee":
        pred = p.argmax(2).numpy()
        run = np.zeros(n, int)
        for m in range(n_exits - 1):
            run = np.where(pred[m] == pred[m - 1], run + 1, 1) if m > 0 else np.ones(n, int)
            hit = undecided & (run >= patience)
            where[hit], undecided = m, undecided & ~hit
        return where
    conf = p.amax(2).numpy()
    for m in range(n_exits - 1):
        hit = undecided & (conf[m] >= threshold)
        where[hit], undecided = m, undecided & ~hit
    return where


def evaluate_exits(log_probs, labels: torch.Tensor, flops: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean FLOPs as a share of the full model) for the given per-sample exits."""
    preds = torch.stack([lp.argmax(1) for lp in log_probs]).numpy()  # E, N
    acc = float((preds[where, np.arange(len(where))] == labels.numpy()).mean())
    return acc, float(flops[where].mean() / flops[-1])


def sweep(log_probs, labels, flops, method: str, thresholds=None) -> list[dict]:
    """Accuracy and FLOPs share for every setting of the exit rule: the accuracy-FLOPs curve."""
    if method == "pbee":
        grid = [{"patience": k} for k in range(1, len(log_probs) + 1)]  # the last: never exit early
    else:
        ts = np.round(np.linspace(0.3, 1.0, 71), 3) if thresholds is None else thresholds
        grid = [{"threshold": float(t)} for t in ts]
    rows = []
    for g in grid:
        acc, share = evaluate_exits(log_probs, labels, flops, simulate(log_probs, method, **g))
        rows.append({**g, "accuracy": acc, "flops_share": share})
    return rows


def calibrate(log_probs, labels, flops, method: str, target_flops: float | None = None,
              target_accuracy: float | None = None) -> dict:
    """Pick the threshold (or patience) that meets a FLOPs share, or an accuracy, on validation data."""
    if (target_flops is None) == (target_accuracy is None):
        raise ConfigError("calibrate needs exactly one of target_flops / target_accuracy", "pass one of them")
    rows = sweep(log_probs, labels, flops, method)
    if target_flops is not None:
        ok = [r for r in rows if r["flops_share"] <= target_flops]
        return max(ok, key=lambda r: r["accuracy"]) if ok else min(rows, key=lambda r: r["flops_share"])
    ok = [r for r in rows if r["accuracy"] >= target_accuracy]
    return min(ok, key=lambda r: r["flops_share"]) if ok else max(rows, key=lambda r: r["accuracy"])


ZtwLoss = Literal["ensemble", "separate"]


def ic_loss(model: EarlyExitModel, logits: list[torch.Tensor], y: torch.Tensor, ztw_loss: ZtwLoss = "ensemble"):
    """Mean NLL over every exit. ZTW, `ensemble`: over its ensembles, so each head learns through
    them; `separate` (as the ZTW paper trains): each head on its own cross-entropy, and the
    ensembles on the heads' outputs detached, so they learn to combine and not to reshape."""
    if model.ensemble is None or ztw_loss == "ensemble":
        lps = model.log_probs(logits)
        return sum(F.nll_loss(lp, y) for lp in lps) / len(lps)
    own = sum(F.cross_entropy(z, y) for z in logits)
    ens = sum(F.nll_loss(lp, y) for lp in model.ensemble([z.detach() for z in logits]))
    return (own + ens) / len(logits)


class EarlyExitClassifier(EarlyExitModel):
    """`adaptive.backbone.Classifier` with exits, built from plain arguments so a checkpoint can name it
    (class_path + init_args) and a stage YAML can swap it in."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (24, 48, 96, 160), exits: tuple[int, ...] = (0, 1, 2),
                 method: str = "ztw", threshold: float = 0.9, patience: int = 2, hidden: int = 0,
                 conv: int = 0):
        from adaptive.backbone import Classifier

        cfg = ExitConfig(method=method, exits=list(exits), threshold=threshold, patience=patience, hidden=hidden, conv=conv)
        super().__init__(Classifier(num_classes, tuple(widths)), num_classes, cfg)

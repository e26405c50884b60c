"""Training regimes for early-exit models.

- joint: backbone, final head and ICs together from the start;
- disjoint: backbone + final head first, then ICs (and the ZTW ensemble) on the frozen backbone;
- mixed: backbone + final head first, then everything together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch.nn import functional as F

from adaptive.model import EarlyExitModel, ZtwLoss, ic_loss

Regime = Literal["joint", "disjoint", "mixed"]


def _epochs(model, params, batches: Iterable, epochs: int, lr: float, loss_fn, train_backbone: bool):
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(1, epochs * len(batches)))
    for _ in range(epochs):
        model.train()
        if not train_backbone:
            model.base.eval()  # frozen: keep BatchNorm statistics as the backbone learnt them
        for x, y in batches:
            loss = loss_fn(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def train(model: EarlyExitModel, batches, regime: Regime, epochs: int, lr: float = 3e-3,
          backbone_epochs: int | None = None, ztw_loss: ZtwLoss = "ensemble") -> EarlyExitModel:
    """`batches`: a re-iterable of (x, y) with len(); epochs are per phase. `ztw_loss`: see ic_loss."""
    base_params = list(model.base.parameters())
    exit_params = [p for n, p in model.named_parameters() if not n.startswith("base.")]

    def final_only(x, y):
        return F.cross_entropy(model.base(x), y)

    def all_exits(x, y):
        return ic_loss(model, model.forward_all(x), y, ztw_loss)

    if regime == "joint":
        _epochs(model, base_params + exit_params, batches, epochs, lr, all_exits, True)
        return model
    _epochs(model, base_params, batches, epochs if backbone_epochs is None else backbone_epochs, lr, final_only, True)
    if regime == "disjoint":
        for p in base_params:
            p.requires_grad_(False)
        _epochs(model, exit_params, batches, epochs, lr, all_exits, False)
        for p in base_params:
            p.requires_grad_(True)
    else:  # mixed
        _epochs(model, base_params + exit_params, batches, epochs, lr / 3, all_exits, True)
    return model

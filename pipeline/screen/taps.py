"""Keep the activations a model computes anyway, so screening needs no second forward pass."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from pipeline.errors import ConfigError


def find_modules(model: nn.Module, layers: list[str], what: str) -> dict[str, nn.Module]:
    named = dict(model.named_modules())
    out = {}
    for name in layers:
        if name not in named:
            near = difflib.get_close_matches(name, [n for n in named if n], n=3, cutoff=0.5)
            raise ConfigError(f"{what} has no layer {name!r}",
                              f"use a module name from model.named_modules(){', e.g. ' + ', '.join(near) if near else ''}")
        out[name] = named[name]
    return out


class ActivationTap:
    """Forward hooks that record, per top-level call of `model`, each tapped layer's output.

    Early-exit models run later blocks on fewer samples; after the call they expose
    `last_exit` (exit index per sample), and `rows()` says which samples a layer's output holds."""

    def __init__(self, model: nn.Module, layers: list[str], what: str = "the model"):
        self.layers = list(layers)
        self.calls: list[dict] = []
        self.removed = False
        self._skip = False
        mods = find_modules(model, self.layers, what)
        self._handles = [model.register_forward_pre_hook(self._start)]
        self._handles += [m.register_forward_hook(self._grabber(n)) for n, m in mods.items()]
        self._handles.append(model.register_forward_hook(self._end))

    def __deepcopy__(self, memo):
        # ultralytics deep-copies the model it predicts with, hooks and all; the copy's hooks must
        # still report here, so the hooks' owner is shared rather than copied
        return self

    def _start(self, module, args):
        # a pass the model marks `tap_skip` (a test-time flip) is no input of its own: not recorded
        self._skip = bool(getattr(module, "tap_skip", False))
        if not self.removed and not self._skip:
            self.calls.append({"n": int(args[0].shape[0]), "acts": {}, "exit": None})

    def _grabber(self, name: str):
        def grab(module, args, out):
            if self.calls and not self.removed and not self._skip:
                self.calls[-1]["acts"][name] = (out[0] if isinstance(out, (tuple, list)) else out).detach()
        return grab

    def _end(self, module, args, out):
        if self.calls and not self.removed and not self._skip:
            ex = getattr(module, "last_exit", None)
            self.calls[-1]["exit"] = None if ex is None else ex.detach().cpu()
            self.calls[-1]["precision"] = getattr(module, "last_precision", "fp32")  # set by an ONNX Runtime forward
            lps = getattr(module, "last_log_probs", None)  # an early-exit model's per-exit log-probs
            if lps is not None:
                self.calls[-1]["exit_lp"] = [t.detach().float().cpu() for t in lps]

    def take(self) -> list[dict]:
        calls, self.calls = self.calls, []
        return calls

    def remove(self) -> None:
        self.removed = True  # copies of the model made while hooked keep the hooks: silence them
        for h in self._handles:
            h.remove()


def rows(n_rows: int, exit_index: torch.Tensor | None, n: int) -> torch.Tensor:
    """Sample indices (of the call's n) that a layer output with `n_rows` rows belongs to.

    Samples that leave an early-exit model stop at once, so the samples reaching any block are
    those with the latest exits: the n_rows largest exit indices, in their original order."""
    if exit_index is None or n_rows == n:
        return torch.arange(n)
    if n_rows == 0:
        return torch.arange(0)
    t = exit_index.sort(descending=True).values[n_rows - 1]
    idx = torch.nonzero(exit_index >= t).flatten()
    if len(idx) != n_rows:
        raise RuntimeError(f"layer output has {n_rows} rows but {len(idx)} samples reached it")
    return idx

"""What an early-exit model's own internal classifiers say about an input, as screen features.

A minimal attack (CW-L2, DeepFool) moves the input just past the final head's decision boundary:
the final exit is unsure, and the early exits, which see shallower features, often still vote for
the original class. Both show in log-probabilities the model computes anyway."""

from __future__ import annotations

import torch

from pipeline.errors import ConfigError

WIDTH = 2   # features per exit
CAP = 30.0  # margins beyond this carry no more information, only float noise


def exit_columns(lp: torch.Tensor, decided: torch.Tensor) -> torch.Tensor:
    """[N, 2] for one exit: how far the class the model finally decided (`decided` [N]) leads this
    exit's best other class (negative where the exit disagrees), and the exit's entropy. Class-free,
    so a detector cannot learn which states are common instead of which inputs are odd; and no
    column is a function of another, which a full-covariance mixture could not fit."""
    lp = lp.float()
    mine = lp.gather(1, decided[:, None].long())[:, 0]
    other = lp.scatter(1, decided[:, None].long(), float("-inf")).amax(1)
    entropy = -(lp.exp() * lp).nan_to_num().sum(1)
    return torch.stack([(mine - other).clamp(-CAP, CAP), entropy], 1)


def check_layers(model: torch.nn.Module, layers: list[str], what: str) -> None:
    """A screen that reads the exits needs layer i to be the block exit i sits on, so that a sample
    reaching layer i has also reached exit i, and no further."""
    exits = getattr(getattr(model, "cfg", None), "exits", None)
    if exits is None or not hasattr(model, "base"):
        raise ConfigError(f"{what} has no early exits for the screen to read", "set the screen target's `exits: false`")
    want = [f"base.backbone.blocks.{b}" for b in [*exits, len(model.base.backbone.blocks) - 1]]
    if list(layers) != want:
        raise ConfigError(f"a screen with `exits: true` on {what} needs its layers on the exits' blocks {want}, got {list(layers)}",
                          f"set the target's `layers:` to {want}, or `exits: false`")

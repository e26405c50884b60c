"""What an early-exit model's own internal classifiers say about an input, as screen features.

A minimal attack (CW-L2, DeepFool) moves the input just past the final head's decision boundary:
the final exit is unsure, and the early exits, which see shallower features, often still vote for
the original class. Both show in log-probabilities the model computes anyway."""

from __future__ import annotations

import numpy as np
import torch

FLOOR = -20.0  # log-probabilities below this carry no more information, only float noise
WIDTH = 3      # features per exit


def exit_columns(lp: torch.Tensor, decided: torch.Tensor) -> torch.Tensor:
    """[N, 3] for one exit: its top log-probability, its margin over the runner-up, and the
    log-probability it gives the class the model finally decided (`decided` [N]). Class-free, so a
    detector cannot learn which states are common instead of which inputs are odd."""
    lp = lp.float().clamp_min(FLOOR)
    top2 = lp.topk(2, 1).values
    return torch.stack([top2[:, 0], top2[:, 0] - top2[:, 1], lp.gather(1, decided[:, None].long())[:, 0]], 1)


def exit_features(log_probs: list[torch.Tensor]) -> np.ndarray:
    """[N, 3 * exits] for samples that all reached every exit (exits off)."""
    decided = log_probs[-1].argmax(1)
    return torch.cat([exit_columns(lp, decided) for lp in log_probs], 1).cpu().numpy()


def check_layers(model: torch.nn.Module, layers: list[str], what: str) -> None:
    """A screen that reads the exits needs layer i to be the block exit i sits on, so that a sample
    reaching layer i has also reached exit i, and no further."""
    from pipeline.errors import ConfigError

    exits = getattr(getattr(model, "cfg", None), "exits", None)
    if exits is None or not hasattr(model, "base"):
        raise ConfigError(f"{what} has no early exits for the screen to read", "set the screen target's `exits: false`")
    want = [f"base.backbone.blocks.{b}" for b in [*exits, len(model.base.backbone.blocks) - 1]]
    if list(layers) != want:
        raise ConfigError(f"a screen with `exits: true` on {what} needs its layers on the exits' blocks {want}, got {list(layers)}",
                          f"set the target's `layers:` to {want}, or `exits: false`")

"""Backbones that yield activations block by block (the ztw_cv pattern)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class BlockCNN(nn.Module):
    """A small VGG-like CNN. `iter_blocks` yields each block's output in order; an early-exit
    model attaches heads to any of them, and a plain classifier just takes the last one."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (24, 48, 96, 160)):
        super().__init__()
        chans = (in_channels, *widths)
        self.blocks = nn.ModuleList(_block(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.out_channels = list(widths)

    def iter_blocks(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        for block in self.blocks:
            x = block(x)
            yield x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for x in self.iter_blocks(x):
            pass
        return x


class Classifier(nn.Module):
    """Backbone + global pooling + linear head. Stages call it as `model(x) -> logits`, which is
    all an early-exit replacement has to provide too."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (24, 48, 96, 160), dropout: float = 0.2):
        super().__init__()
        self.backbone = BlockCNN(3, tuple(widths))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

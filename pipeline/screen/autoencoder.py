"""The plain torch autoencoder that sits on one feature map, and the WAE-MMD penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerAE(nn.Module):
    """A small convolutional autoencoder on one layer's activations.

    Activations are average-pooled to a fixed `grid` first, so one AE serves any input size and
    costs little next to the stage itself; they are then standardised per channel with
    statistics from clean training data (`mean`, `std` buffers)."""

    def __init__(self, channels: int, grid: int = 8, latent: int = 16, hidden: int = 32):
        super().__init__()
        self.args = {"channels": channels, "grid": grid, "latent": latent, "hidden": hidden}
        if grid % 2:
            raise ValueError(f"grid must be even, got {grid}")
        self.grid, g2 = grid, grid // 2
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(hidden * g2 * g2, latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden * g2 * g2), nn.ReLU(inplace=True), nn.Unflatten(1, (hidden, g2, g2)),
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, padding=1))

    def prepare(self, act: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(act.float(), self.grid)
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z

    def features(self, act: torch.Tensor, codes: bool = False) -> torch.Tensor:
        """Per sample: log reconstruction error and latent norm (and the latent code itself)."""
        return self.features_of(self.prepare(act), codes)

    @torch.no_grad()
    def features_of(self, x: torch.Tensor, codes: bool = False) -> torch.Tensor:
        """`features` of activations already pooled and standardised by `prepare`."""
        if self.encoder[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # an AE loaded for inference (ScreenModel.load)
        rec, z = self(x)
        err = (rec - x).pow(2).flatten(1).mean(1)
        feats = [err.clamp_min(1e-12).log()[:, None], z.norm(dim=1, keepdim=True)]
        return torch.cat(feats + ([z] if codes else []), 1)


def mmd_imq(z: torch.Tensor, prior: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Maximum mean discrepancy with the inverse multiquadric kernel, as in WAE-MMD."""
    c = 2.0 * z.shape[1] * scale
    n = z.shape[0]

    def k(a, b):
        return c / (c + torch.cdist(a, b).pow(2))

    off = 1 - torch.eye(n, device=z.device)
    kzz = (k(z, z) * off).sum() / (n * (n - 1))
    kpp = (k(prior, prior) * off).sum() / (n * (n - 1))
    return kzz + kpp - 2 * k(z, prior).mean()

"""Adversarial and out-of-distribution input screening with layer-wise autoencoders
(after Wójcik et al., "Adversarial examples detection and analysis with layer-wise autoencoders").

A stage's model already computes its intermediate activations; `ActivationTap` keeps them, one
`LayerAE` per tapped layer turns them into reconstruction error and latent norm, and a
scikit-learn detector turns those features into one score per input."""

from pipeline.screen.autoencoder import LayerAE
from pipeline.screen.model import ScreenModel
from pipeline.screen.taps import ActivationTap

__all__ = ["ActivationTap", "LayerAE", "ScreenModel"]

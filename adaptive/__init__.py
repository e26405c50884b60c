"""Efficient models: backbones that expose their activations block by block, so early-exit
heads can attach without rewriting them."""

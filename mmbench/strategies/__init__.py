"""Gradient strategies: how the fused and unimodal losses' gradients reach the encoders."""

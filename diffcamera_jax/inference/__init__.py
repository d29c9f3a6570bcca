"""Inference: the sampler, the `Refocuser` API and full-resolution composition."""

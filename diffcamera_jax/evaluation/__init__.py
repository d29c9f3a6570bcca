"""Evaluation: the benchmark engine, metrics, perceptual scores, periodic validation and reports."""

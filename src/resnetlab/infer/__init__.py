"""Inference: load a trained checkpoint, evaluate it, predict image files, export weights."""

"""Tests of ml.engine: plain PyTorch and NumPy, no database."""

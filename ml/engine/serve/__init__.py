"""Serving: one predictor interface, a PyTorch and an ONNX Runtime backend, Grad-CAM heatmaps.

Import the backend you need: ``base`` and ``onnx`` never import torch, so an ONNX Runtime worker
never loads it.
"""

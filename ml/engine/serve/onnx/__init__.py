"""ONNX Runtime backend: export from a checkpoint, NumPy preprocessing, prediction, int8."""

"""ONNX Runtime backend: export from a checkpoint, NumPy preprocessing, prediction, int8.

The modules, in the order a model goes through them: ``export`` (checkpoint -> ``<sha256>.onnx``
and its sidecar; imports torch, lazily), ``quantise`` (int8 and its gate), ``preprocess`` and
``predict`` (serving, torch-free), over ``sidecar`` (the cache's file names and metadata). The
names the Django app, the commands and the benchmarks use are importable from here.
"""

from ml.engine.serve.onnx.export import EXPORT_TOLERANCE, export_onnx
from ml.engine.serve.onnx.predict import (
    OnnxPredictor,
    cached_onnx_models,
    clear_onnx_cache,
    create_session,
    get_onnx_predictor,
)
from ml.engine.serve.onnx.preprocess import open_rgb, preprocess_image
from ml.engine.serve.onnx.quantise import (
    INT8_TOLERANCE,
    gate_from_outputs,
    int8_gate,
    quantize_int8,
)
from ml.engine.serve.onnx.sidecar import (
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxModelMismatchError,
    onnx_path_for,
    read_sidecar,
    sidecar_path,
    variant_of,
    write_sidecar,
)

__all__ = [
    "EXPORT_TOLERANCE",
    "INPUT_NAME",
    "INT8_TOLERANCE",
    "OUTPUT_NAMES",
    "OnnxModelMismatchError",
    "OnnxPredictor",
    "cached_onnx_models",
    "clear_onnx_cache",
    "create_session",
    "int8_gate",
    "export_onnx",
    "gate_from_outputs",
    "get_onnx_predictor",
    "onnx_path_for",
    "open_rgb",
    "preprocess_image",
    "quantize_int8",
    "read_sidecar",
    "sidecar_path",
    "variant_of",
    "write_sidecar",
]

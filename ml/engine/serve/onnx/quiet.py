"""Quiet the ONNX tool chain while it exports or quantises a model.

Its deprecation warnings (exporter internals, not ours to fix) would clutter a command's output
and fail the tests, and some of its loggers narrate every optimisation pass at INFO; inside
``quiet`` those warnings are ignored and those loggers keep only their warnings.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Modules whose warnings are silenced while exporting or quantising.
EXPORTER_MODULES = r"(torch\.onnx|torch\._?export|torch\.fx|onnxscript|onnx_ir|onnx)(\.|$)"
QUANTIZER_MODULES = r"(onnxruntime|onnx)(\.|$)"
CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "onnxruntime.quantization")


@contextlib.contextmanager
def quiet(warning_modules: str) -> Iterator[None]:
    """Ignore warnings from modules matching ``warning_modules``; CHATTY_LOGGERS at WARNING."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [log.level for log in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=warning_modules)
        for log in loggers:
            log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
        try:
            yield
        finally:
            for log, level in zip(loggers, levels, strict=True):
                log.setLevel(level)

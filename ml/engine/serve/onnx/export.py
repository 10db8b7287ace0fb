"""Export a SkinSense checkpoint to ONNX (fp32), with the sidecar serving reads.

No Django here; torch is imported inside ``export_onnx`` only, so the serving modules of this
package stay torch-free. The graph (torch's dynamo exporter) takes ``image`` float[N, 3, S, S]
with a dynamic batch axis and returns ``malignant_logit`` float[N] and ``class_logits``
float[N, C]; it must reproduce the torch model's logits within ``EXPORT_TOLERANCE``. The model
and its sidecar are named by the weights' SHA-256 and written atomically; a second export of
the same weights reuses them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.engine.files import atomic_path, sha256_file
from ml.engine.serve.onnx.predict import create_session
from ml.engine.serve.onnx.quiet import EXPORTER_MODULES, quiet
from ml.engine.serve.onnx.sidecar import (
    INPUT_NAME,
    OUTPUT_NAMES,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    Sidecar,
    onnx_path_for,
    sidecar_path,
    write_sidecar,
)

if TYPE_CHECKING:
    import torch
    from torch.onnx import ONNXProgram

    from ml.engine.model.checkpoint import Checkpoint
    from ml.engine.model.network import SkinSenseNet

logger = logging.getLogger(__name__)

EXPORT_TOLERANCE = 1e-3  # the largest logit difference, ONNX Runtime vs torch, of an export


def export_onnx(checkpoint_path: str | Path, sha256: str, cache_dir: str | Path) -> Path:
    """Export the checkpoint's SkinSenseNet to ``cache_dir/<sha256>.onnx`` (fp32), with its
    sidecar; reuse both when they are already there.

    The graph takes ``image`` float[N, 3, S, S] (N dynamic; S from the checkpoint's
    preprocessing) and returns ``malignant_logit`` float[N] and ``class_logits`` float[N, C].
    The checkpoint file must have the given SHA-256 (``WeightsMismatchError`` otherwise), and
    the exported graph must reproduce the torch model's logits within ``EXPORT_TOLERANCE``.
    """
    final = onnx_path_for(cache_dir, sha256)
    if final.is_file() and sidecar_path(final).is_file():
        return final

    import torch

    from ml.engine.model.checkpoint import load_checkpoint
    from ml.engine.serve.torch_predictor import WeightsMismatchError

    actual = sha256_file(checkpoint_path)
    if actual != sha256:
        raise WeightsMismatchError(
            f"weights file {Path(checkpoint_path).name} has SHA-256 {actual[:12]}…, expected "
            f"{sha256[:12]}…; refusing to export it"
        )
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build_model().eval()
    size = int(checkpoint.preprocessing["image_size"])
    # Batch 2, not 1: torch.export specialises a dimension whose example size is 1.
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    program = _export_program(model, example)
    with atomic_path(final) as temporary:
        with quiet(EXPORTER_MODULES):
            program.save(temporary, external_data=False)
        difference = _logit_difference(temporary, model, example)
        sidecar = _sidecar(checkpoint, sha256, final.name, sha256_file(temporary))
        sidecar["fp32"].update(
            exporter=f"torch.onnx dynamo (torch {torch.__version__})",
            opset=_opset(temporary),
            max_abs_logit_difference=difference,
        )
        write_sidecar(final, sidecar)
    logger.info("exported %s (logits within %.2g of torch)", final.name, difference)
    return final


def _export_program(model: SkinSenseNet, example: torch.Tensor) -> ONNXProgram:
    """The dynamo export of ``model`` with a dynamic batch axis."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    with quiet(EXPORTER_MODULES):
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"x": {0: batch}},
            optimize=True,
            verbose=False,
        )
    if program is None:  # only the legacy (dynamo=False) exporter returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    return program


def _logit_difference(path: Path, model: SkinSenseNet, example: torch.Tensor) -> float:
    """The largest logit difference between the graph at ``path`` (ONNX Runtime) and ``model``;
    a RuntimeError when it is over ``EXPORT_TOLERANCE``."""
    import torch

    with torch.inference_mode():
        expected = [t.numpy() for t in model(example)]
    session = create_session(path, threads=0)
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.numpy()})
    del session
    difference = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    if not difference <= EXPORT_TOLERANCE:
        raise RuntimeError(
            f"the exported graph differs from the model by {difference:.2g} in its logits"
        )
    return difference


def _sidecar(checkpoint: Checkpoint, sha256: str, file_name: str, onnx_sha256: str) -> Sidecar:
    """The sidecar of a fresh fp32 export: what serving needs of the checkpoint."""
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "weights_sha256": sha256,
        "backbone": checkpoint.backbone,
        "classes": [c.as_dict() for c in checkpoint.classes],
        "preprocessing": dict(checkpoint.preprocessing),
        "temperature": float(checkpoint.temperature),
        "thresholds": dict(checkpoint.thresholds),
        "fp32": {"file": file_name, "sha256": onnx_sha256},
    }


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)

"""The training state behind ``--resume``: model, optimiser, scheduler and scaler state, the
fold's progress, and every random number generator, saved after each epoch.

A state file holds tensors and plain data only (read with ``weights_only=True``) and is written
atomically (``ml.engine.files.atomic_path``): a crash mid-write leaves the previous one intact.
A run resumes only with the options that decide which images land where, and the same images.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.engine.files import atomic_path
from ml.engine.train.config import TrainConfig

STATE_FORMAT = "skinsense.training-state"
STATE_VERSION = 1

# Options that decide which images land where: a run can only resume with the same ones.
RESUME_MUST_MATCH = (
    "data",
    "format",
    "csv_path",
    "metadata_path",
    "classes",
    "max_per_class",
    "check_images",
    "folds",
    "test_fraction",
    "validation_fraction",
    "seed",
    "backbone",
    "image_size",
    "imbalance",
)


def rng_state() -> dict[str, Any]:
    """torch, CUDA, NumPy and Python generator states, as tensors and plain data."""
    numpy_state = np.random.get_state(legacy=True)
    if not isinstance(numpy_state, tuple):  # legacy=True gives the MT19937 tuple
        raise TypeError("NumPy's global generator is not MT19937")
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_state[0], "state": list(python_state[1])},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), None))


def save_training_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a training state atomically (a crash mid-write leaves the previous one intact)."""
    with atomic_path(path) as temporary:
        torch.save({"format": STATE_FORMAT, "format_version": STATE_VERSION, **state}, temporary)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a training state written by ``save_training_state`` (tensors and plain data only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a SkinSense training state")
    if state.get("format_version") != STATE_VERSION:
        raise ValueError(f"unsupported training state version {state.get('format_version')}")
    return state


def check_resumable(
    saved: Mapping[str, Any], config: TrainConfig, fingerprint: str, saved_print: str
) -> None:
    """Raise ValueError unless ``config`` and the data match the run that saved the state."""
    current = asdict(config)
    differing = [k for k in RESUME_MUST_MATCH if saved.get(k) != current.get(k)]
    if differing:
        raise ValueError(
            "cannot resume: the run was started with different "
            + ", ".join(f"{k} ({saved.get(k)!r} → {current.get(k)!r})" for k in differing)
        )
    if fingerprint != saved_print:
        raise ValueError("cannot resume: the data set's images or labels changed since the run")

"""Export a registered model version to ONNX (fp32), and optionally a gated int8 variant.

The files land in MODEL_ROOT/onnx, named by the weights' SHA-256, where the ONNX Runtime
backend looks for them; run at deployment so no worker exports (and loads torch) itself.
"""

import random
from collections import defaultdict
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml.management.commands.evaluate import find_model_version
from ml.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Export MODEL_VERSION's weights to MODEL_ROOT/onnx/<sha256>.onnx (fp32) with a JSON "
        "sidecar; with --int8, also <sha256>.int8.onnx, calibrated on the training side of the "
        "data's lesion-grouped split and gated on its held-out test split (offered when its "
        "balanced accuracy is at most one point below fp32's)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model-version",
            default="active",
            help="id, name:version, or 'active' (default)",
        )
        parser.add_argument("--int8", action="store_true", help="also quantise to int8 and gate")
        parser.add_argument("--calibration-data", help="labelled images (required with --int8)")
        parser.add_argument(
            "--format",
            default="ham10000",
            choices=["ham10000", "isic2019", "isic-archive", "folder"],
        )
        parser.add_argument("--csv", dest="csv_path")
        parser.add_argument("--metadata", dest="metadata_path")
        parser.add_argument(
            "--calibration-images",
            type=int,
            default=200,
            help="training-split images for the int8 ranges, spread over the classes (200)",
        )
        parser.add_argument(
            "--eval-images",
            type=int,
            default=0,
            help="held-out images for the gate, chosen at random; 0 = the whole test split",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="split seed (default: the model's training seed, else 0)",
        )
        parser.add_argument(
            "--test-fraction",
            type=float,
            default=None,
            help="held-out fraction (default: the model's training value, else 0.2)",
        )
        parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads")

    def handle(self, *args, **o):
        from ml.engine.files import sha256_file
        from ml.engine.serve.onnx import export_onnx, onnx_path_for, read_sidecar

        version = find_model_version(o["model_version"])
        if o["int8"] and not o["calibration_data"]:
            raise CommandError("--int8 needs --calibration-data (labelled images to calibrate on)")
        weights = Path(version.weights_path)
        if not weights.is_file():
            raise CommandError(f"the weights of {version} are missing ({weights})")
        if sha256_file(weights) != version.weights_sha256:
            raise CommandError(f"the weights of {version} do not match the registry; refusing")

        cache_dir = Path(settings.MODEL_ROOT) / "onnx"
        cached = onnx_path_for(cache_dir, version.weights_sha256).is_file()
        fp32_path = export_onnx(weights, version.weights_sha256, cache_dir)
        self.stdout.write(
            f"ONNX fp32 of {version}: {fp32_path} ({'cached' if cached else 'exported'})"
        )
        if not o["int8"]:
            return
        self._int8(version, fp32_path, read_sidecar(fp32_path), o)

    def _int8(self, version: ModelVersion, fp32_path: Path, sidecar: dict, o: dict) -> None:
        from ml.engine.files import sha256_file
        from ml.engine.serve.onnx import (
            int8_gate,
            onnx_path_for,
            quantize_int8,
            write_sidecar,
        )

        seed, fraction, calibration, evaluation = self._samples(version, o)
        self.stdout.write(
            f"int8: calibrating on {len(calibration)} training-split images, gating on "
            f"{len(evaluation)} held-out images (seed {seed}, test fraction {fraction})"
        )
        int8_path = onnx_path_for(fp32_path.parent, version.weights_sha256, variant="int8")
        quantize_int8(fp32_path, [s.path for s in calibration], int8_path)
        gate = int8_gate(fp32_path, int8_path, sidecar, evaluation, threads=o["threads"])
        sidecar["int8"] = {
            "file": int8_path.name,
            "sha256": sha256_file(int8_path),
            **gate,
            "calibration_images": len(calibration),
            "data": str(o["calibration_data"]),
            "format": o["format"],
            "split": {"seed": seed, "test_fraction": fraction},
        }
        write_sidecar(fp32_path, sidecar)
        self._report(gate, int8_path)

    def _samples(self, version: ModelVersion, o: dict) -> tuple[int, float, list, list]:
        """(seed, test fraction, calibration samples, held-out samples) of the labelled data:
        calibration from the training side of the lesion-grouped split, the gate's images
        from its held-out side, as the model was trained (its seed and fraction by default)."""
        from ml.engine.data.readers import read_samples
        from ml.engine.data.splits import group_ids, holdout_split
        from ml.engine.model.taxonomy import classes_from_dicts

        config = (version.metrics or {}).get("config") or {}
        seed = o["seed"] if o["seed"] is not None else int(config.get("seed", 0))
        fraction = o["test_fraction"]
        if fraction is None:
            fraction = float(config.get("test_fraction") or 0.2)
        try:
            sample_set = read_samples(
                o["calibration_data"],
                o["format"],
                classes=classes_from_dicts(version.classes),
                csv_path=o["csv_path"],
                metadata_path=o["metadata_path"],
            )
            samples = sample_set.samples
            stored_ids = (version.metrics or {}).get("test_image_ids")
            if stored_ids:
                training, held_out = _split_by_ids(samples, set(stored_ids))
            else:  # a model trained before the ids were stored: rebuild the split
                training, held_out = holdout_split(
                    [s.label for s in samples], group_ids(samples), fraction, seed=seed
                )
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc))
        calibration = _spread_over_classes(
            [samples[i] for i in training], o["calibration_images"], seed=seed
        )
        evaluation = [samples[i] for i in held_out]
        if o["eval_images"] and o["eval_images"] < len(evaluation):
            evaluation = random.Random(seed).sample(evaluation, o["eval_images"])
        return seed, fraction, calibration, evaluation

    def _report(self, gate: dict, int8_path: Path) -> None:
        self.stdout.write(
            f"balanced accuracy on {gate['images']} held-out images: "
            f"fp32 {gate['fp32_balanced_accuracy']:.4f}, int8 {gate['int8_balanced_accuracy']:.4f}"
            f" (top-class agreement {gate['top_class_agreement']:.3f}, max |Δp| "
            f"{gate['max_abs_probability_difference']:.4f})"
        )
        if gate["offered"]:
            self.stdout.write(self.style.SUCCESS(f"int8 offered: {int8_path}"))
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"int8 NOT offered: it loses {gate['balanced_accuracy_drop']:.4f} balanced "
                    f"accuracy (at most {gate['tolerance']} allowed); {int8_path} is kept for study"
                )
            )


def _split_by_ids(samples: list, test_ids: set[str]) -> tuple[list[int], list[int]]:
    """(training side, held-out side) as the model's training run made them: the held-out
    images are exactly those of ``test_ids`` (its checkpoint's ``test_image_ids``), every one
    of which must be in the data."""
    held_out = [i for i, s in enumerate(samples) if s.path.stem in test_ids]
    missing = len(test_ids) - len({samples[i].path.stem for i in held_out})
    if missing:
        raise ValueError(
            f"{missing} of the model's {len(test_ids)} held-out images are not in the data: "
            "give the data set the model was trained on"
        )
    held = set(held_out)
    return [i for i in range(len(samples)) if i not in held], held_out


def _spread_over_classes(samples: list, count: int, *, seed: int) -> list:
    """Up to ``count`` samples, taken in turn from each class (seeded), so rare classes'
    activations are in the calibration ranges too."""
    by_class: dict[int, list] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    queues = []
    for label in sorted(by_class):
        members = list(by_class[label])
        rng.shuffle(members)
        queues.append(members)
    chosen: list = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen

"""Package a trained model for the repository: half-precision weights (the network runs in
float32; only the stored file is halved), the held-out image ids in its metadata, and a
manifest with its SHA-256 beside it, which ``ensure_default_model`` checks."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Write a trained checkpoint as the shipped default model: float16 weights, the test "
        "split's image ids, and a manifest (name, version, sha256, notes) beside it."
    )

    def add_arguments(self, parser):
        parser.add_argument("checkpoint", help="A trained model.pt (manage.py train's output)")
        parser.add_argument("out", help="Where to write it, e.g. ml/weights/ham10000-resnet18.pt")
        parser.add_argument("--name", required=True)
        parser.add_argument("--model-version", dest="model_version", required=True)
        parser.add_argument("--notes", default="")

    def handle(self, *args, **o):
        from ml.engine.files import sha256_file
        from ml.engine.model.checkpoint import load_checkpoint, save_checkpoint

        try:
            checkpoint = load_checkpoint(o["checkpoint"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"{o['checkpoint']}: {exc}") from exc
        if not checkpoint.metadata.get("test_image_ids"):
            checkpoint.metadata["test_image_ids"] = _recovered_test_ids(checkpoint.metadata)
            self.stdout.write(
                f"test_image_ids rebuilt from the run's config: "
                f"{len(checkpoint.metadata['test_image_ids'])} images (split counts checked)"
            )
        checkpoint.state_dict = {
            key: value.half() if value.is_floating_point() else value
            for key, value in checkpoint.state_dict.items()
        }
        checkpoint.build_model()  # the halved weights still fit
        out = Path(o["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, out)
        manifest = {
            "name": o["name"],
            "version": o["model_version"],
            "sha256": sha256_file(out),
            "backbone": checkpoint.backbone,
            "image_size": checkpoint.preprocessing.get("image_size"),
            "notes": o["notes"],
            "held_out": _figures(checkpoint.metadata.get("test_report") or {}),
        }
        out.with_suffix(".json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        size = out.stat().st_size / 2**20
        self.stdout.write(self.style.SUCCESS(f"wrote {out} ({size:.1f} MiB) and its manifest"))


FIGURES = (
    "images",
    "balanced_accuracy",
    "macro_auc",
    "malignant_auc",
    "malignant_auc_from_classes",
    "ece",
    "ece_calibrated",
    "temperature",
)


def _figures(report: dict) -> dict:
    """The held-out report's headline figures (the whole report stays in the checkpoint)."""
    return {key: report[key] for key in FIGURES if key in report}


def _recovered_test_ids(metadata: dict) -> list[str]:
    """The held-out ids of a run trained before they were stored: the same split rebuilt from
    the run's own config (it is seeded and deterministic), accepted only when its size and class
    counts equal the ones the run recorded."""
    from ml.engine.train import TrainConfig
    from ml.engine.train.prepared import prepare_data

    config = TrainConfig.from_dict(metadata["config"])
    config.num_workers = 1
    data = prepare_data(config)
    codes = [c.code for c in data.classes]
    rebuilt = data.splits.summary([s.label for s in data.samples], codes)["test"]
    recorded = metadata["splits"]["test"]
    if rebuilt != recorded:
        raise CommandError(f"the rebuilt test split {rebuilt} differs from the run's {recorded}")
    return sorted(data.samples[i].path.stem for i in data.splits.test)

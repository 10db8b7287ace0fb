"""Register a model checkpoint as a ModelVersion.

The file is checked (its weights must fit the network it describes) and rewritten under
MODEL_ROOT as a self-describing checkpoint named by its SHA-256 (``ml.services``).
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.engine.model.taxonomy import parse_class_spec
from ml.services import model_version_register


class Command(BaseCommand):
    help = (
        "Register a checkpoint (SkinSense format, or the original SkinSense layout: ResNet under "
        "model.*, binary_head, multi_head — then --classes is required) as a model version."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="The checkpoint file (.pt)")
        parser.add_argument("--name", default=None, help="Model name (default: the file's stem)")
        parser.add_argument(
            "--model-version", dest="model_version", default="1", help="Version label (default 1)"
        )
        parser.add_argument(
            "--classes",
            default=None,
            help="Class list file for original-layout checkpoints: one 'CODE,ISIC diagnosis' or "
            "'CODE,Name,category' per line, in the multi-head's output order.",
        )
        parser.add_argument("--activate", action="store_true", help="Make it the active model")
        parser.add_argument("--notes", default="")

    def handle(self, *args, path, name, model_version, classes, activate, notes, **options):
        from ml.engine.model.checkpoint import (
            CheckpointError,  # torch: loaded to check the weights, not before
        )

        source = Path(path)
        if not source.is_file():
            raise CommandError(f"{path}: no such file")
        class_list = None
        if classes:
            try:
                class_list = parse_class_spec(Path(classes).read_text().splitlines())
            except (OSError, ValueError) as exc:
                raise CommandError(f"--classes: {exc}")
        try:
            registered = model_version_register(
                path=source,
                name=name or source.stem,
                version=model_version,
                classes=class_list,
                activate=activate,
                notes=notes,
            )
        except (CheckpointError, ValueError) as exc:
            raise CommandError(str(exc))
        state = "active" if registered.is_active else "not active (use --activate)"
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {registered} (id {registered.pk}, {registered.backbone}, "
                f"{len(registered.classes)} classes, sha256 {registered.weights_sha256[:12]}…): "
                f"{state}"
            )
        )

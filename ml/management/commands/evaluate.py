"""Evaluate a registered model version on a data set; print the metrics, write JSON."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.engine.data.readers import FORMATS  # torch-free, like the whole of readers
from ml.models import ModelVersion


class Command(BaseCommand):
    help = "Evaluate MODEL_VERSION (id, or name:version) on ISIC-format data."

    def add_arguments(self, parser):
        parser.add_argument("model_version")
        parser.add_argument("--data", required=True)
        parser.add_argument("--format", default="ham10000", choices=list(FORMATS))
        parser.add_argument("--csv", dest="csv_path")
        parser.add_argument("--metadata", dest="metadata_path")
        parser.add_argument("--max-per-class", type=int)
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--num-workers", type=int, default=0)
        parser.add_argument("--device", default="auto")
        parser.add_argument("--json", dest="json_path", help="Write the full report here")

    def handle(self, *args, model_version, **o):
        from ml.engine.data.readers import read_samples
        from ml.engine.eval.report import format_report
        from ml.engine.files import sha256_file
        from ml.engine.model.checkpoint import load_checkpoint
        from ml.engine.train import evaluate_on_data

        version = find_model_version(model_version)
        if sha256_file(version.weights_path) != version.weights_sha256:
            raise CommandError(f"the weights of {version} do not match the registry; refusing")
        try:
            checkpoint = load_checkpoint(version.weights_path)
            sample_set = read_samples(
                o["data"],
                o["format"],
                classes=checkpoint.classes,
                csv_path=o["csv_path"],
                metadata_path=o["metadata_path"],
            )
            report = evaluate_on_data(
                checkpoint,
                sample_set,
                max_per_class=o["max_per_class"],
                batch_size=o["batch_size"],
                num_workers=o["num_workers"],
                device=o["device"],
            )
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc))
        report["model_version"] = {
            "id": version.pk,
            "name": version.name,
            "version": version.version,
        }
        self.stdout.write(format_report(report))
        if o["json_path"]:
            Path(o["json_path"]).write_text(json.dumps(report, indent=1, default=str))
            self.stdout.write(f"Report written to {o['json_path']}")


def find_model_version(reference: str) -> ModelVersion:
    """A model version named on a command line: ``active``, an id, or ``name[:version]``."""
    if reference == "active":
        version = ModelVersion.objects.filter(is_active=True).first()
        if version is None:
            raise CommandError("no active model version; name one with --model-version")
        return version
    if reference.isdigit():
        version = ModelVersion.objects.filter(pk=int(reference)).first()
    else:
        name, _, tag = reference.partition(":")
        version = ModelVersion.objects.filter(name=name, version=tag or "1").first()
    if version is None:
        raise CommandError(f"no model version {reference!r}")
    return version

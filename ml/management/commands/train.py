"""Train a model on ISIC-format data, evaluate it on a held-out split, register it."""

import logging
import traceback
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ml.models import TrainingRun, TrainingStatus
from ml.services import model_version_register

FORMATS = ["ham10000", "isic2019", "isic-archive", "folder"]


class Command(BaseCommand):
    help = (
        "Train SkinSenseNet on a data set (lesion-grouped stratified K folds + a held-out test "
        "split), evaluate the chosen model on the test split, and register it as a model version "
        "(not active unless --activate). Progress goes to the terminal and to a TrainingRun."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="The data set's folder (or its CSV)")
        parser.add_argument("--format", choices=FORMATS, default="ham10000")
        parser.add_argument("--csv", dest="csv_path", help="The labels CSV, when ambiguous")
        parser.add_argument("--metadata", dest="metadata_path", help="isic2019: metadata CSV")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--run-folds", type=int, help="Train only the first N folds")
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--epochs", type=int, default=30)
        parser.add_argument("--image-size", type=int, default=224)
        parser.add_argument(
            "--backbone",
            default="resnet50",
            choices=["resnet18", "resnet34", "resnet50", "resnet101"],
        )
        parser.add_argument(
            "--init",
            default="imagenet",
            help="imagenet (local torchvision cache / TORCH_HOME), random, or PATH",
        )
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--lr", type=float, default=3e-4)
        parser.add_argument("--weight-decay", type=float, default=0.01)
        parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
        parser.add_argument("--scheduler", choices=["cosine", "plateau"], default="cosine")
        parser.add_argument("--patience", type=int, default=5, help="Early stopping (0: never)")
        parser.add_argument("--imbalance", choices=["sampler", "loss", "none"], default="sampler")
        parser.add_argument("--max-per-class", type=int, help="Quick runs: cap images per class")
        parser.add_argument("--max-steps-per-epoch", type=int)
        parser.add_argument("--num-workers", type=int, default=2)
        parser.add_argument("--device", default="auto")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--output-dir", help="Where the run keeps its state (default: MODEL_ROOT/runs/<run id>)"
        )
        parser.add_argument("--resume", help="A training state file (…/last.pt) to continue")
        parser.add_argument("--name", default="skinsense")
        parser.add_argument("--model-version", dest="model_version", help="Default: the run id")
        parser.add_argument("--activate", action="store_true")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        from ml.engine.train.run import TrainConfig, WeightsNotAvailableError, train

        data = Path(o["data"])
        if not data.exists():
            raise CommandError(f"--data {data}: no such file or folder")
        values = {
            "data": str(data),
            "format": o["format"],
            "csv_path": o["csv_path"],
            "metadata_path": o["metadata_path"],
            "folds": o["folds"],
            "run_folds": o["run_folds"],
            "test_fraction": o["test_fraction"],
            "epochs": o["epochs"],
            "image_size": o["image_size"],
            "backbone": o["backbone"],
            "init": o["init"],
            "batch_size": o["batch_size"],
            "lr": o["lr"],
            "weight_decay": o["weight_decay"],
            "optimizer": o["optimizer"],
            "scheduler": o["scheduler"],
            "patience": o["patience"],
            "imbalance": o["imbalance"],
            "max_per_class": o["max_per_class"],
            "max_steps_per_epoch": o["max_steps_per_epoch"],
            "num_workers": o["num_workers"],
            "device": o["device"],
            "seed": o["seed"],
            "resume": o["resume"],
            "progress": not o["no_progress"],
        }
        run = TrainingRun.objects.create(config=values)
        output_dir = o["output_dir"] or (
            str(Path(o["resume"]).parent)
            if o["resume"]
            else str(Path(settings.MODEL_ROOT) / "runs" / str(run.pk))
        )
        values["output_dir"] = output_dir
        config = TrainConfig.from_dict(values)
        run.config, run.output_dir = asdict(config), output_dir
        run.save(update_fields=["config", "output_dir"])
        log_lines: list[str] = []
        handler = _ListHandler(log_lines)
        logging.getLogger("ml").addHandler(handler)

        def on_epoch(metrics: dict) -> None:
            line = f"fold {metrics.get('fold')} epoch {metrics.get('epoch')}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)
            )
            self.stdout.write(line)
            run.history = [*run.history, metrics]
            run.log = "\n".join(log_lines[-2000:])
            run.save(update_fields=["history", "log", "updated_at"])

        try:
            checkpoint = train(config, on_epoch)
        except (WeightsNotAvailableError, ValueError, FileNotFoundError) as exc:
            self._fail(run, log_lines, str(exc))
            raise CommandError(str(exc))
        except BaseException as exc:
            self._fail(run, log_lines, "".join(traceback.format_exception(exc))[-4000:])
            raise
        finally:
            logging.getLogger("ml").removeHandler(handler)

        model_path = Path(output_dir) / "model.pt"
        version = model_version_register(
            path=model_path,
            name=o["name"],
            version=o["model_version"] or f"run-{run.pk}",
            activate=o["activate"],
            notes=f"Trained by training run {run.pk}: {data} ({o['format']})",
        )
        report = checkpoint.metadata.get("test_report") or {}
        run.status = TrainingStatus.SUCCEEDED
        run.metrics = report
        run.model_version = version
        run.finished_at = timezone.now()
        run.log = "\n".join(log_lines[-2000:])
        run.save()
        from ml.engine.eval.metrics import format_report

        if report:
            self.stdout.write(format_report(report))
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {version} (id {version.pk})"
                f"{' — active' if version.is_active else ''}; "
                f"training run {run.pk}; files in {output_dir}"
            )
        )

    def _fail(self, run, log_lines, error):
        run.status = TrainingStatus.FAILED
        run.error = error
        run.log = "\n".join(log_lines[-2000:])
        run.finished_at = timezone.now()
        run.save()


class _ListHandler(logging.Handler):
    def __init__(self, lines):
        super().__init__(logging.INFO)
        self.lines = lines
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record):
        self.lines.append(self.format(record))

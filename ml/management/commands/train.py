"""Train a model on ISIC-format data, evaluate it on a held-out split, register it."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ml.engine.data.readers import FORMATS  # torch-free, like the whole of readers
from ml.models import ModelVersion, TrainingRun, TrainingStatus
from ml.services import model_version_register

if TYPE_CHECKING:  # the engine (torch) loads only when the command runs
    from ml.engine.train import TrainConfig


class Command(BaseCommand):
    help = (
        "Train SkinSenseNet on a data set (lesion-grouped stratified K folds + a held-out test "
        "split), evaluate the chosen model on the test split, and register it as a model version "
        "(not active unless --activate). Progress goes to the terminal and to a TrainingRun."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="The data set's folder (or its CSV)")
        parser.add_argument("--format", choices=list(FORMATS), default="ham10000")
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
        parser.add_argument(
            "--label-smoothing", type=float, default=0.0, help="Of the diagnosis head's CE"
        )
        parser.add_argument(
            "--binary-loss-weight", type=float, default=0.5, help="λ in CE + λ·BCE (malignant)"
        )
        parser.add_argument("--dropout", type=float, default=0.0, help="Before the heads")
        parser.add_argument("--warmup-epochs", type=int, default=1)
        parser.add_argument(
            "--min-lr-ratio", type=float, default=0.01, help="cosine: the last epoch's lr / lr"
        )
        parser.add_argument("--grad-clip", type=float, help="Clip the gradient norm to this")
        parser.add_argument("--validation-fraction", type=float, default=0.2, help="With --folds 1")
        parser.add_argument("--eval-batch-size", type=int, help="Default: 2 × --batch-size")
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
        from ml.engine.train import WeightsNotAvailableError, train

        data = Path(o["data"])
        if not data.exists():
            raise CommandError(f"--data {data}: no such file or folder")
        values = _config_values(o, data)
        run = TrainingRun.objects.create(config=values)
        config, output_dir = self._configure(run, values, o)
        log_lines: list[str] = []
        handler = _ListHandler(log_lines)
        logging.getLogger("ml").addHandler(handler)
        try:
            checkpoint = train(config, self._epoch_recorder(run, log_lines))
        except (WeightsNotAvailableError, ValueError, FileNotFoundError) as exc:
            self._fail(run, log_lines, str(exc))
            raise CommandError(str(exc))
        except BaseException as exc:
            self._fail(run, log_lines, "".join(traceback.format_exception(exc))[-4000:])
            raise
        finally:
            logging.getLogger("ml").removeHandler(handler)
        version = model_version_register(
            path=Path(output_dir) / "model.pt",
            name=o["name"],
            version=o["model_version"] or f"run-{run.pk}",
            activate=o["activate"],
            notes=f"Trained by training run {run.pk}: {data} ({o['format']})",
        )
        report = checkpoint.metadata.get("test_report") or {}
        self._succeed(run, log_lines, report, version)
        self._print_result(report, version, run, output_dir)

    def _configure(self, run: TrainingRun, values: dict, o: dict) -> tuple[TrainConfig, str]:
        """The run's TrainConfig and output folder (default MODEL_ROOT/runs/<run id>), stored
        on the TrainingRun."""
        from ml.engine.train import TrainConfig

        output_dir = o["output_dir"] or (
            str(Path(o["resume"]).parent)
            if o["resume"]
            else str(Path(settings.MODEL_ROOT) / "runs" / str(run.pk))
        )
        values["output_dir"] = output_dir
        config = TrainConfig.from_dict(values)
        run.config, run.output_dir = asdict(config), output_dir
        run.save(update_fields=["config", "output_dir"])
        return config, output_dir

    def _epoch_recorder(self, run: TrainingRun, log_lines: list[str]) -> Callable[[dict], None]:
        """The training callback: print each epoch and append it to the TrainingRun."""

        def on_epoch(metrics: dict) -> None:
            line = f"fold {metrics.get('fold')} epoch {metrics.get('epoch')}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)
            )
            self.stdout.write(line)
            run.history = [*run.history, metrics]
            run.log = "\n".join(log_lines[-2000:])
            run.save(update_fields=["history", "log", "updated_at"])

        return on_epoch

    def _print_result(
        self, report: dict, version: ModelVersion, run: TrainingRun, output_dir: str
    ) -> None:
        from ml.engine.eval.report import format_report

        if report:
            self.stdout.write(format_report(report))
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {version} (id {version.pk})"
                f"{' — active' if version.is_active else ''}; "
                f"training run {run.pk}; files in {output_dir}"
            )
        )

    def _succeed(
        self, run: TrainingRun, log_lines: list[str], report: dict, version: ModelVersion
    ) -> None:
        run.status = TrainingStatus.SUCCEEDED
        run.metrics = report
        run.model_version = version
        run.finished_at = timezone.now()
        run.log = "\n".join(log_lines[-2000:])
        run.save()

    def _fail(self, run: TrainingRun, log_lines: list[str], error: str) -> None:
        run.status = TrainingStatus.FAILED
        run.error = error
        run.log = "\n".join(log_lines[-2000:])
        run.finished_at = timezone.now()
        run.save()


# TrainConfig fields taken from the command line as they are.
_DIRECT_OPTIONS = (
    "format",
    "csv_path",
    "metadata_path",
    "folds",
    "run_folds",
    "test_fraction",
    "epochs",
    "image_size",
    "backbone",
    "init",
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "scheduler",
    "patience",
    "imbalance",
    "label_smoothing",
    "binary_loss_weight",
    "dropout",
    "warmup_epochs",
    "min_lr_ratio",
    "grad_clip",
    "validation_fraction",
    "eval_batch_size",
    "max_per_class",
    "max_steps_per_epoch",
    "num_workers",
    "device",
    "seed",
    "resume",
)


def _config_values(o: dict, data: Path) -> dict:
    """The TrainConfig values of the command's options (output_dir is added later)."""
    return {
        "data": str(data),
        **{name: o[name] for name in _DIRECT_OPTIONS},
        "progress": not o["no_progress"],
    }


class _ListHandler(logging.Handler):
    def __init__(self, lines):
        super().__init__(logging.INFO)
        self.lines = lines
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record):
        self.lines.append(self.format(record))

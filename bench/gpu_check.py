"""The GPU checks in one short run: AMP inference throughput, training throughput, a short
real training run on the ISIC sample with its held-out report.

Made for the lent GPU machine (one call, a few minutes), where only PyTorch, torchvision,
scikit-learn and matplotlib are installed: it imports ``ml`` alone, never Django. On a CPU it
runs the same steps, tiny (``--quick``), so the script itself is tested here. Usage, from the
repository root::

    python3 -m bench.gpu_check --data PATH/isic-sample --out DIR [--epochs 6] [--quick]

Prints one JSON line per step and writes them all to ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from bench.common import RESNET50_GFLOP
from ml.engine import train as training
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from ml.engine.serve.torch_predictor import pick_device

GFLOP_PER_IMAGE = RESNET50_GFLOP  # ResNet50 at 224×224, one forward pass


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or "cpu"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def inference_throughput(device, batches, amp: bool, seconds: float) -> list[dict]:
    """Forward passes of SkinSenseNet (ResNet50, random weights) on random 224×224 batches."""
    model = SkinSenseNet(backbone="resnet50", num_classes=len(ISIC2019_CLASSES)).eval()
    model = model.to(device, memory_format=torch.channels_last)
    results = []
    for batch in batches:
        images = torch.randn(batch, 3, 224, 224, device=device).to(
            memory_format=torch.channels_last
        )
        autocast = training.autocast(device, amp)
        with autocast:
            for _ in range(3):  # warm-up: cudnn picks its algorithms
                model(images)
            sync(device)
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds or runs < 3:
                model(images)
                runs += 1
            sync(device)
        elapsed = time.perf_counter() - started
        rate = runs * batch / elapsed
        results.append(
            {
                "step": "inference",
                "amp_fp16": amp,
                "batch": batch,
                "images_per_second": round(rate, 1),
                "ms_per_batch": round(1000 * elapsed / runs, 2),
                "effective_tflops": round(rate * GFLOP_PER_IMAGE / 1000, 2),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def predictor_check(args, device) -> dict:
    """The serving Predictor on this device (AMP fp16 on CUDA) against the same checkpoint in
    fp32 on the CPU, on real images: the largest probability difference, and its speed with
    preprocessing included."""
    import tempfile

    from PIL import Image

    from ml.engine.model.checkpoint import Checkpoint, save_checkpoint
    from ml.engine.serve.torch_predictor import Predictor

    torch.manual_seed(0)
    network = SkinSenseNet(backbone="resnet50", num_classes=len(ISIC2019_CLASSES))
    checkpoint = Checkpoint(
        backbone="resnet50", classes=ISIC2019_CLASSES, state_dict=network.state_dict()
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        save_checkpoint(checkpoint, path)
        served = Predictor.from_file(path, expected_sha256=None, device=device)
        reference = Predictor.from_file(path, expected_sha256=None, device="cpu")
    paths = sorted((Path(args.data) / "images").glob("*.jpg"))[: args.predictor_images]
    images = [Image.open(p).convert("RGB") for p in paths]
    worst = 0.0
    for a, b in zip(served.predict_batch(images), reference.predict_batch(images), strict=True):
        differences = [abs(a.malignant_probability - b.malignant_probability)]
        theirs = b.diagnosis_probabilities
        differences += [abs(p - theirs[code]) for code, p in a.diagnosis_probabilities.items()]
        worst = max(worst, *differences)
    timings = {}
    for batch in (1, len(images)):
        served.predict_batch(images[:batch])
        sync(device)
        started, runs = time.perf_counter(), 0
        while time.perf_counter() - started < args.seconds:
            served.predict_batch(images[:batch])
            runs += 1
        sync(device)
        timings[batch] = round(runs * batch / (time.perf_counter() - started), 1)
    row = {
        "step": "predictor",
        "device": device_name(device),
        "amp_fp16": served.amp,
        "images": len(images),
        "max_abs_probability_difference_vs_cpu_fp32": worst,
        "images_per_second_with_preprocessing": timings,
    }
    print(json.dumps(row), flush=True)
    return row


def short_training(args, device) -> dict:
    config = training.TrainConfig(
        data=args.data,
        format="ham10000",
        folds=3,
        run_folds=1,
        backbone="resnet50",
        init="random",
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        warmup_epochs=1,
        patience=0,
        num_workers=args.num_workers,
        device=str(device),
        max_per_class=args.max_per_class,
        max_steps_per_epoch=args.max_steps,
        output_dir=str(Path(args.out) / "run"),
        progress=False,
    )
    epochs = []

    def on_epoch(row: dict) -> None:
        keep = ("fold", "epoch", "train_loss", "val_balanced_accuracy", "val_macro_auc")
        keep += ("val_malignant_auc", "train_images_per_second", "val_images_per_second")
        epochs.append({key: row.get(key) for key in keep})
        print(json.dumps({"step": "epoch", **epochs[-1]}), flush=True)

    started = time.perf_counter()
    checkpoint = training.train(config, on_epoch)
    report = checkpoint.metadata.get("test_report") or {}
    summary = {
        "step": "training",
        "backbone": "resnet50",
        "init": "random",
        "image_size": args.image_size,
        "epochs": args.epochs,
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "temperature": checkpoint.temperature,
        "held_out": {
            key: report.get(key)
            for key in (
                "n",
                "balanced_accuracy",
                "macro_auc",
                "malignant_auc",
                "sensitivity_at_specificity",
                "ece",
                "ece_calibrated",
                "malignant_ece",
                "malignant_ece_calibrated",
                "images_per_second",
            )
        },
    }
    print(json.dumps(summary, default=str), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=min(12, os.cpu_count() or 1))
    parser.add_argument("--seconds", type=float, default=3.0, help="per inference measurement")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test on a CPU")
    parser.add_argument("--predictor-images", type=int, default=64)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    args.max_per_class = args.max_steps = None
    batches = [1, 32, 128]
    if args.quick:
        args.epochs, args.image_size, args.batch_size, args.num_workers = 1, 64, 8, 0
        args.max_per_class, args.max_steps, args.seconds, batches = 6, 2, 0.1, [1, 2]
        args.predictor_images = 4
    Path(args.out).mkdir(parents=True, exist_ok=True)
    device = pick_device("auto")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    header = {
        "step": "machine",
        "device": device_name(device),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(header), flush=True)
    rows = [header]
    rows += inference_throughput(device, batches, amp=device.type == "cuda", seconds=args.seconds)
    if device.type == "cuda":
        rows += inference_throughput(device, batches[-1:], amp=False, seconds=args.seconds)
    rows.append(predictor_check(args, device))
    if not args.skip_training:
        rows.append(short_training(args, device))
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

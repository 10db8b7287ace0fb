"""Training and evaluation throughput (images/s) of the real pipeline on this machine.

Decoding and augmentation run in DataLoader workers exactly as in ``ml.engine.train.train``;
the model starts from random weights (nothing is downloaded). The first ``--warmup`` batches
are not timed. Usage::

    .venv/bin/python -m bench.train_speed --backbone resnet50 --image-size 224 \
        --batch-size 16 --num-workers 2 --steps 6
    .venv/bin/python -m bench.train_speed --backbone resnet18 --image-size 128

Reads ``../shared/data/isic-sample`` (HAM10000 layout) unless ``--data`` names another set, or
``--synthetic N`` makes N dermoscopy-sized (600×450) JPEGs in a temporary folder-per-class set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from bench.common import SAMPLE, add_model_arguments
from ml.engine import train as training
from ml.engine.data.readers import read_samples
from ml.engine.serve.torch_predictor import pick_device


def synthetic_dataset(root: Path, count: int, size=(600, 450)) -> Path:
    """Folder-per-class JPEGs shaped like HAM10000 originals: a lesion-like blob on skin."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    from ml.engine.model.taxonomy import ISIC2019_CLASSES

    rng = np.random.default_rng(0)
    for index in range(count):
        code = ISIC2019_CLASSES[index % len(ISIC2019_CLASSES)].code
        (root / code).mkdir(parents=True, exist_ok=True)
        skin = tuple(int(v) for v in rng.integers([170, 110, 90], [240, 180, 160]))
        image = Image.new("RGB", size, skin)
        draw = ImageDraw.Draw(image)
        w, h = size
        box = [rng.integers(w // 6, w // 3), rng.integers(h // 6, h // 3)]
        box += [w - rng.integers(w // 6, w // 3), h - rng.integers(h // 6, h // 3)]
        draw.ellipse([int(v) for v in box], fill=tuple(int(v) for v in rng.integers(30, 140, 3)))
        noise = rng.normal(0, 12, (h, w, 3))
        pixels = np.clip(np.asarray(image, dtype=float) + noise, 0, 255).astype("uint8")
        image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2))
        image.save(root / code / f"{index:05d}.jpg", quality=90)
    return root


def timed_batches(loader, steps: int, warmup: int, step_fn) -> float:
    """Images/s over ``steps`` batches after ``warmup`` untimed ones."""
    iterator = iter(loader)
    for _ in range(warmup):
        step_fn(next(iterator))
    images, started = 0, time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
        step_fn(batch)
        images += len(batch[1])
    return images / (time.perf_counter() - started)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SAMPLE))
    parser.add_argument("--format", default="ham10000")
    parser.add_argument("--synthetic", type=int, default=0, help="make N images instead")
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    return parser.parse_args(argv)


def make_steps(model, loss_fn, optimizer, scaler, device, on_cuda: bool, amp: bool):
    """(train step, eval step) on one batch each, as the training loop runs them."""

    def train_step(batch):
        images, labels, malignant = training.to_device(batch, device, on_cuda)
        with training.autocast(device, amp):
            malignant_logit, class_logits = model(images)
        loss = loss_fn(malignant_logit, class_logits, labels, malignant)[0]
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        loss.item()  # waits for the device, as the training loop does

    @torch.inference_mode()
    def eval_step(batch):
        images, _, _ = training.to_device(batch, device, on_cuda)
        with training.autocast(device, amp):
            malignant_logit, _ = model(images)
        malignant_logit.float().cpu()

    return train_step, eval_step


def measure(args, samples, classes, device) -> dict:
    """Train and eval images/s on ``samples`` with the options of ``args``."""
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    amp = on_cuda and not args.no_amp
    eval_batch = args.eval_batch_size or 2 * args.batch_size
    config = training.TrainConfig(
        backbone=args.backbone,
        init="random",
        image_size=args.image_size,
        batch_size=args.batch_size,
        eval_batch_size=eval_batch,
        num_workers=args.num_workers,
        device=str(device),
    )
    train_loader, eval_loader = training.make_loaders(
        samples, samples, classes, config, device=device
    )
    model = training.build_model(args.backbone, len(classes), "random").to(device)
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = training.make_loss([s.label for s in samples], classes, config).to(device)
    optimizer = training.make_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    train_step, eval_step = make_steps(model, loss_fn, optimizer, scaler, device, on_cuda, amp)
    model.train()
    train_rate = timed_batches(train_loader, args.steps, args.warmup, train_step)
    model.eval()
    eval_rate = timed_batches(eval_loader, args.steps, args.warmup, eval_step)
    return {
        "data": "synthetic 600x450 JPEG" if args.synthetic else args.data,
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "eval_batch_size": eval_batch,
        "num_workers": args.num_workers,
        "device": torch.cuda.get_device_name(device) if on_cuda else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "amp": amp,
        "train_images_per_second": round(train_rate, 1),
        "eval_images_per_second": round(eval_rate, 1),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory(prefix="skinsense-bench-") as folder:
        if args.synthetic:
            args.data = str(synthetic_dataset(Path(folder), args.synthetic))
            args.format = "folder"
        sample_set = read_samples(args.data, args.format)
        eval_batch = args.eval_batch_size or 2 * args.batch_size
        needed = (args.steps + args.warmup) * max(args.batch_size, eval_batch)
        samples = (sample_set.samples * (needed // len(sample_set.samples) + 1))[:needed]
        result = measure(args, samples, sample_set.classes, device)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()

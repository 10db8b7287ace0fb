import random

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from ml.engine import train as training
from ml.engine.data.readers import read_samples
from ml.engine.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ml.engine.model.network import SkinSenseNet
from ml.engine.model.taxonomy import ISIC2019_CLASSES
from ml.engine.model.transforms import default_preprocessing
from ml.engine.serve.torch_predictor import Predictor
from ml.engine.train import (
    JointLoss,
    TrainConfig,
    WeightsNotAvailableError,
    build_model,
    find_imagenet_weights,
    make_loaders,
    make_loss,
    make_scheduler,
    pretrained,
)
from tests import images

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


@pytest.fixture
def folder_data(tmp_path):
    """A folder-per-class data set: 8 classes × 6 small images, colour loosely tied to class."""
    root = tmp_path / "data"
    rng = random.Random(0)
    for index, cls in enumerate(ISIC2019_CLASSES):
        (root / cls.code).mkdir(parents=True)
        for n in range(6):
            base = COLOURS[index % len(COLOURS)]
            colour = tuple(min(255, c + rng.randint(0, 40)) for c in base)
            Image.new("RGB", (40, 40), colour).save(root / cls.code / f"{cls.code}_{n}.jpg")
    return root


def quick_config(data, output_dir, **overrides) -> TrainConfig:
    values = {
        "data": str(data),
        "format": "folder",
        "backbone": "resnet18",
        "init": "random",
        "image_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "folds": 2,
        "run_folds": 1,
        "test_fraction": 0.25,
        "num_workers": 0,
        "device": "cpu",
        "progress": False,
        "output_dir": str(output_dir),
    }
    values.update(overrides)
    return TrainConfig(**values)


# --- initialisation -------------------------------------------------------------------------


def test_imagenet_init_without_cached_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotAvailableError) as error:
        build_model("resnet18", 8, "imagenet")
    message = str(error.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "never downloads" in message
    assert "--init random" in message


def test_imagenet_init_reads_torchvisions_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), cache / "resnet18-f37072fd.pth")
    assert find_imagenet_weights("resnet18") == cache / "resnet18-f37072fd.pth"

    # Our file is not torchvision's, so its name's SHA-256 prefix does not match:
    with pytest.raises(WeightsNotAvailableError, match="damaged"):
        build_model("resnet18", 8, "imagenet")

    monkeypatch.setattr(pretrained, "_check_torchvision_hash", lambda _path: None)
    model = build_model("resnet18", 8, "imagenet")
    assert torch.equal(model.trunk.conv1.weight, reference.conv1.weight)
    assert model.multi_head.out_features == 8


def test_init_from_a_resnet_weights_file(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = build_model("resnet18", 3, str(tmp_path / "resnet18.pth"))
    assert torch.equal(model.trunk.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    with pytest.raises(ValueError, match="does not fit a resnet34 trunk"):
        build_model("resnet34", 3, str(tmp_path / "resnet18.pth"))


def test_init_from_a_skinsense_checkpoint_keeps_the_heads_for_the_same_classes(tmp_path):
    torch.manual_seed(0)
    source = SkinSenseNet(num_classes=8, backbone="resnet18")
    checkpoint = Checkpoint("resnet18", ISIC2019_CLASSES, source.state_dict())
    save_checkpoint(checkpoint, tmp_path / "m.pt")

    same = build_model("resnet18", 8, str(tmp_path / "m.pt"))
    assert same.training
    assert torch.equal(same.multi_head.weight, source.multi_head.weight)
    other = build_model("resnet18", 5, str(tmp_path / "m.pt"))
    assert torch.equal(other.trunk.conv1.weight, source.trunk.conv1.weight)
    assert other.multi_head.out_features == 5
    with pytest.raises(ValueError, match="is a resnet18, not a resnet50"):
        build_model("resnet50", 8, str(tmp_path / "m.pt"))
    with pytest.raises(WeightsNotAvailableError, match="neither"):
        build_model("resnet18", 8, str(tmp_path / "missing.pt"))


# --- loss, imbalance, schedule --------------------------------------------------------------


def test_the_joint_loss_is_cross_entropy_plus_lambda_bce():
    torch.manual_seed(0)
    class_logits, malignant_logit = torch.randn(6, 8), torch.randn(6)
    targets = torch.tensor([0, 1, 2, 3, 4, 7])
    malignant = torch.tensor([1.0, 0, 1, 0, 0, 1])
    total, ce, bce = JointLoss(binary_weight=0.3)(malignant_logit, class_logits, targets, malignant)
    expected_ce = torch.nn.functional.cross_entropy(class_logits, targets)
    expected_bce = torch.nn.functional.binary_cross_entropy_with_logits(malignant_logit, malignant)
    assert torch.allclose(ce, expected_ce)
    assert torch.allclose(bce, expected_bce)
    assert torch.allclose(total, expected_ce + 0.3 * expected_bce)


def test_weighted_loss_gives_rare_classes_more_weight(folder_data, tmp_path):
    labels = [0] * 30 + [1] * 10 + [3] * 2
    loss = make_loss(
        labels, ISIC2019_CLASSES, quick_config(folder_data, tmp_path, imbalance="loss")
    )
    weights = loss.class_loss.weight
    assert weights[3] > weights[1] > weights[0]
    assert weights[2] == 0
    # 30 of 42 are MEL (malignant): the BCE's positive weight is negatives / positives.
    assert loss.binary_loss.pos_weight.item() == pytest.approx(12 / 30)
    assert (
        make_loss(labels, ISIC2019_CLASSES, quick_config(folder_data, tmp_path)).class_loss.weight
        is None
    )


def test_the_default_sampler_draws_classes_about_equally_often(folder_data, tmp_path):
    samples = read_samples(folder_data, "folder").samples
    imbalanced = [s for s in samples if s.label == 0] * 10 + [s for s in samples if s.label == 5]
    config = quick_config(folder_data, tmp_path)
    train_loader, val_loader = make_loaders(imbalanced, samples[:4], ISIC2019_CLASSES, config)
    drawn = [imbalanced[i].label for _ in range(5) for i in train_loader.sampler]
    share_rare = drawn.count(5) / len(drawn)
    assert 0.4 < share_rare < 0.6  # 6 of 66 images, but half of the draws
    images_, labels, malignant = next(iter(val_loader))
    assert images_.shape == (4, 3, 32, 32)


def test_cosine_schedule_warms_up_then_decays():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    config = TrainConfig(epochs=5, warmup_epochs=1, min_lr_ratio=0.01)
    scheduler = make_scheduler(optimizer, config)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.5)
    assert rates[1] == pytest.approx(1.0)
    assert rates[1] > rates[2] > rates[3] > rates[4] == pytest.approx(0.01)


def test_training_state_keeps_the_random_number_generators(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    training.save_training_state(tmp_path / "state.pt", {"rng": training.rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    training.set_rng_state(training.load_training_state(tmp_path / "state.pt")["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


# --- whole runs -----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_one_epoch_on_sample_images_gives_a_checkpoint_with_metadata(tmp_path):
    if not images.sample_available():
        pytest.skip("the ISIC sample (../shared/data/isic-sample) is absent")
    config = quick_config(
        images.SAMPLE_DIR,
        tmp_path / "run",
        format="ham10000",
        image_size=64,
        max_per_class=4,  # 32 images
        progress=True,
    )
    epochs = []
    checkpoint = training.train(config, epochs.append)

    assert [(e["fold"], e["epoch"]) for e in epochs] == [(0, 1)]
    assert 0 <= epochs[0]["val_balanced_accuracy"] <= 1
    assert epochs[0]["train_images"] > 0
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.backbone == "resnet18"
    assert checkpoint.preprocessing["image_size"] == 64
    assert checkpoint.temperature > 0
    metadata = checkpoint.metadata
    assert metadata["config"]["max_per_class"] == 4
    assert metadata["data"]["images"] == 32
    assert metadata["data"]["unreadable"] == 0
    assert metadata["temperature"] == checkpoint.temperature
    assert len(metadata["folds"]) == 1
    assert metadata["selected_fold"] == 0
    report = metadata["test_report"]
    assert report["images"] == metadata["splits"]["test"]["images"] == 8
    # the held-out images by id, all of the sample, none trained on
    test_ids = metadata["test_image_ids"]
    assert len(test_ids) == len(set(test_ids)) == 8
    assert all((images.SAMPLE_DIR / "images" / f"{i}.jpg").is_file() for i in test_ids)
    assert {"balanced_accuracy", "ece", "ece_calibrated", "per_class"} <= set(report)

    saved = load_checkpoint(tmp_path / "run" / "model.pt")
    assert saved.metadata["selected_fold"] == 0
    assert {p.name for p in (tmp_path / "run" / "plots").iterdir()} == {
        "confusion_matrix.png",
        "roc.png",
        "reliability.png",
    }
    image = Image.open(images.sample_image_path())
    result = Predictor(saved).predict(image)
    assert set(result.diagnosis_probabilities) == {c.code for c in ISIC2019_CLASSES}


class Interrupted(Exception):
    pass


def test_a_run_interrupted_mid_fold_resumes_where_it_stopped(folder_data, tmp_path):
    run = tmp_path / "run"
    config = quick_config(folder_data, run, epochs=2, run_folds=2)
    seen = []

    def stop_after_first_epoch(record):
        seen.append((record["fold"], record["epoch"]))
        raise Interrupted

    with pytest.raises(Interrupted):
        training.train(config, stop_after_first_epoch)
    assert seen == [(0, 1)]
    state = training.load_training_state(run / "last.pt")
    assert (state["fold"], state["epoch"], state["fold_done"]) == (0, 1, False)

    resumed = []
    checkpoint = training.train(
        quick_config(folder_data, run, epochs=2, run_folds=2, resume=str(run / "last.pt")),
        resumed.append,
    )
    assert [(r["fold"], r["epoch"]) for r in resumed] == [(0, 2), (1, 1), (1, 2)]
    folds = checkpoint.metadata["folds"]
    assert [[h["epoch"] for h in f["history"]] for f in folds] == [[1, 2], [1, 2]]
    assert checkpoint.metadata["selected_fold"] in (0, 1)

    with pytest.raises(ValueError, match="cannot resume.*seed"):
        training.train(
            quick_config(folder_data, run, seed=1, resume=str(run / "last.pt")), resumed.append
        )


def test_evaluate_on_data_reports_on_a_folder_and_counts_unreadable_images(folder_data):
    (folder_data / "NV" / "broken.jpg").write_text("not an image")
    torch.manual_seed(0)
    network = SkinSenseNet(num_classes=8, backbone="resnet18")
    checkpoint = Checkpoint(
        "resnet18",
        ISIC2019_CLASSES,
        network.state_dict(),
        preprocessing={**default_preprocessing(32)},
        temperature=1.5,
    )
    sample_set = read_samples(folder_data, "folder", classes=checkpoint.classes)
    result = training.evaluate_on_data(checkpoint, sample_set, device="cpu")
    assert result["images"] == 48
    assert result["data"]["unreadable"] == 1
    assert result["temperature"] == 1.5
    assert {"balanced_accuracy", "malignant_auc", "macro_auc", "ece", "per_class"} <= set(result)

"""Writes owned by ``ml``: the model registry and the prediction of a case.

torch is imported lazily (inside the functions that need it), so web processes that only read
predictions never load it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from diagnosis import services as case_services
from diagnosis.models import Case, CaseStatus
from ml.models import ModelVersion, Prediction
from ml.webhook_payloads import prediction_payload, review_payload

logger = logging.getLogger(__name__)


class PermanentPredictionError(Exception):
    """A failure that retrying cannot fix (no model, bad weights, unreadable image)."""


# --- the model registry -------------------------------------------------------------------


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    """Make this version the one active model (the others are deactivated)."""
    ModelVersion.objects.select_for_update().filter(is_active=True).exclude(
        pk=model_version.pk
    ).update(is_active=False)
    model_version.is_active = True
    model_version.save(update_fields=["is_active"])
    return model_version


def model_version_register(
    *,
    path: str | Path,
    name: str,
    version: str,
    classes=None,
    activate: bool = False,
    is_demo: bool = False,
    notes: str = "",
) -> ModelVersion:
    """Register a checkpoint file (SkinSense format, or the original layout with ``classes``).

    The weights are rewritten as a self-describing SkinSense checkpoint under MODEL_ROOT, named
    by their SHA-256, which the registry records; workers refuse a file whose hash differs.
    """
    from ml.engine.model.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(path, classes=classes)
    checkpoint.build_model()  # proves the weights fit before anything is recorded
    if ModelVersion.objects.filter(name=name, version=version).exists():
        raise ValueError(f"model {name} {version} is already registered")
    root = Path(settings.MODEL_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=root, suffix=".tmp")
    os.close(handle)
    try:
        digest = save_checkpoint(checkpoint, temporary)
        final_name = f"{digest}.pt"
        os.replace(temporary, root / final_name)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    with transaction.atomic():
        model_version = ModelVersion.objects.create(
            name=name,
            version=version,
            backbone=checkpoint.backbone,
            classes=[c.as_dict() for c in checkpoint.classes],
            weights_file=final_name,
            weights_sha256=digest,
            preprocessing=checkpoint.preprocessing,
            thresholds=checkpoint.thresholds,
            temperature=checkpoint.temperature,
            metrics=metrics_from_metadata(checkpoint.metadata),
            is_demo=is_demo,
            notes=notes,
        )
        if activate:
            model_version_activate(model_version=model_version)
    return model_version


def metrics_from_metadata(metadata: dict) -> dict:
    """What the registry keeps of a checkpoint's training metadata: the held-out report and the
    validation curve the clinics choose their operating point from."""
    metrics = dict(metadata.get("metrics") or {})
    report = metadata.get("test_report") or {}
    if report:
        metrics["test"] = report
    if metadata.get("validation_roc"):
        metrics["validation_roc"] = metadata["validation_roc"]
    if metadata.get("config"):
        metrics["config"] = metadata["config"]
    return metrics


def plots_dir(model_version: ModelVersion) -> Path:
    return Path(settings.MODEL_ROOT) / "plots" / model_version.weights_sha256


def model_version_plots(model_version: ModelVersion) -> dict[str, Path]:
    """Draw (once) the held-out evaluation plots of a model version from its stored report."""
    report = (model_version.metrics or {}).get("test")
    if not report:
        return {}
    folder = plots_dir(model_version)
    names = ("confusion_matrix", "roc", "reliability")
    if not all((folder / f"{n}.png").is_file() for n in names):
        from ml.engine.eval.metrics import save_plots
        from ml.engine.model.taxonomy import classes_from_dicts

        save_plots(report, None, None, folder, classes=classes_from_dicts(model_version.classes))
    return {n: folder / f"{n}.png" for n in names if (folder / f"{n}.png").is_file()}


def demo_model_ensure(*, seed: int = 0) -> ModelVersion | None:
    """Make sure some model is active: when none is, activate the DEMO model (random ResNet50
    weights), registering it first if needed.

    Returns the DEMO version it activated, or None when a model was already active. Predictions
    made with it carry a visible "demo model — predictions are meaningless" banner.
    """
    if ModelVersion.objects.filter(is_active=True).exists():
        return None
    existing = ModelVersion.objects.filter(is_demo=True).order_by("-created_at").first()
    if existing is not None:
        return model_version_activate(model_version=existing)
    import torch

    from ml.engine.model.checkpoint import Checkpoint, save_checkpoint
    from ml.engine.model.network import SkinSenseNet
    from ml.engine.model.taxonomy import ISIC2019_CLASSES

    torch.manual_seed(seed)
    network = SkinSenseNet(num_classes=len(ISIC2019_CLASSES), backbone="resnet50")
    with torch.no_grad():  # small heads: outputs near chance, as an untrained model should be
        for head in (network.binary_head, network.multi_head):
            head.weight.mul_(1e-3)
            head.bias.zero_()
    checkpoint = Checkpoint(
        backbone="resnet50",
        classes=ISIC2019_CLASSES,
        state_dict=network.state_dict(),
        metadata={"demo": True, "notes": "random weights; predictions are meaningless"},
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo.pt"
        save_checkpoint(checkpoint, path)
        return model_version_register(
            path=path,
            name="DEMO",
            version="random-resnet50",
            activate=True,
            is_demo=True,
            notes="Random weights for trying the platform. Predictions are meaningless.",
        )


# --- predictions --------------------------------------------------------------------------


def enqueue_prediction(*, case_id: int) -> bool:
    """Send the case to the inference queue. A broker outage is logged, not raised: the case
    stays ``queued`` and the periodic sweeper enqueues it again."""
    from ml.tasks import predict_case_task

    case_services.case_mark_enqueued(case_id=case_id)
    try:
        predict_case_task.apply_async(args=[case_id], retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds when the broker is down
        logger.warning("could not enqueue case %s (%s); the sweeper will retry", case_id, exc)
        return False
    return True


def _predictor_for(model_version: ModelVersion):
    """The serving predictor of this model version, on the backend INFERENCE_BACKEND names."""
    backend = settings.INFERENCE_BACKEND
    if backend == "torch":
        return _torch_predictor_for(model_version)
    return _onnx_predictor_for(model_version, int8=backend == "onnx-int8")


def _onnx_predictor_for(model_version: ModelVersion, *, int8: bool):
    """ONNX Runtime, from the cache that ``manage.py export_onnx`` fills (keyed by the weights'
    SHA-256). A missing fp32 export is made here once (that process imports torch for it); the
    int8 model is used only when its export recorded it as offered (balanced accuracy within
    1 point of fp32), else the fp32 one, with a warning."""
    from ml.engine.serve.onnx import predict as onnx_engine

    path = model_version.weights_path
    if not path.is_file():
        raise PermanentPredictionError(f"The weights file of model {model_version} is missing.")
    cache = settings.MODEL_ROOT / "onnx"
    sha256 = model_version.weights_sha256
    fp32 = onnx_engine.onnx_path_for(cache, sha256)
    chosen = fp32
    if int8:
        int8_path = onnx_engine.onnx_path_for(cache, sha256, variant="int8")
        gate = {}
        if int8_path.is_file():
            gate = onnx_engine.read_sidecar(int8_path).get("int8") or {}
        if gate.get("offered"):
            chosen = int8_path
        else:
            logger.warning(
                "model %s: no int8 model offered (run manage.py export_onnx --int8); using fp32",
                model_version,
            )
    try:
        if not chosen.is_file():
            from ml.engine.serve.torch_predictor import (
                WeightsMismatchError,  # the export needs torch anyway
            )

            logger.info("model %s: exporting to ONNX (once)", model_version)
            try:
                onnx_engine.export_onnx(path, sha256, cache)
            except WeightsMismatchError as exc:
                raise PermanentPredictionError(f"Model {model_version} refused: {exc}") from exc
        return onnx_engine.get_onnx_predictor(chosen, threads=settings.INFERENCE_THREADS)
    except onnx_engine.OnnxModelMismatchError as exc:
        raise PermanentPredictionError(f"Model {model_version} refused: {exc}") from exc


def _torch_predictor_for(model_version: ModelVersion):
    from ml.engine.model.checkpoint import CheckpointError
    from ml.engine.serve.torch_predictor import WeightsMismatchError, get_predictor

    path = model_version.weights_path
    if not path.is_file():
        raise PermanentPredictionError(f"The weights file of model {model_version} is missing.")
    try:
        return get_predictor(
            path, sha256=model_version.weights_sha256, device=settings.INFERENCE_DEVICE
        )
    except (WeightsMismatchError, CheckpointError) as exc:
        raise PermanentPredictionError(f"Model {model_version} refused: {exc}") from exc


def worker_warm_up() -> None:
    """Set the thread count and load the active model once, when a worker process starts, so
    the first case does not pay for it. Failures are logged: tasks report them per case."""
    if settings.INFERENCE_THREADS > 0 and settings.INFERENCE_BACKEND == "torch":
        import torch

        torch.set_num_threads(settings.INFERENCE_THREADS)
    model_version = active_model_version()
    if model_version is None:
        return
    try:
        _predictor_for(model_version)
    except PermanentPredictionError as exc:
        logger.error("worker warm-up: %s", exc)
    else:
        logger.info("worker warm-up: model %s loaded", model_version)


def _load_case_image(case: Case, preprocessing: dict):
    """The stored image as the model needs it (large JPEGs decoded in draft mode)."""
    from ml.engine.data.images import open_for_model

    try:
        with case.image.open("rb") as handle:
            return open_for_model(handle, preprocessing, draft=settings.INFERENCE_JPEG_DRAFT)
    except (OSError, ValueError) as exc:
        raise PermanentPredictionError(f"The stored image could not be read: {exc}") from exc


class _InFlight:
    """The cases this process is predicting right now, held as PostgreSQL session-level
    advisory locks (one per case). Another worker process whose message is for such a case
    waits for that pass instead of running the case a second time; a process that dies
    releases its locks with its connection, so its cases run again. Elsewhere (SQLite: eager
    tasks in one process) every hold succeeds at once."""

    KEY = 0x5353_0000_0000_0000  # this application's part of the advisory-lock key space

    def __init__(self) -> None:
        self.enabled = connection.vendor == "postgresql"
        self.held: set[int] = set()

    def _execute(self, function: str, case_id: int):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [self.KEY + case_id])
            return cursor.fetchone()[0]

    def try_hold(self, case_id: int) -> bool:
        if not self.enabled or case_id in self.held:
            return True
        if not self._execute("pg_try_advisory_lock", case_id):
            return False
        self.held.add(case_id)
        return True

    def wait_hold(self, case_id: int) -> None:
        if self.enabled and case_id not in self.held:
            self._execute("pg_advisory_lock", case_id)
            self.held.add(case_id)

    def release(self, case_ids=None) -> None:
        for case_id in list(self.held if case_ids is None else case_ids):
            if case_id not in self.held:
                continue
            self.held.discard(case_id)
            try:
                self._execute("pg_advisory_unlock", case_id)
            except DatabaseError:  # the connection is gone, and its locks with it
                pass

    def __enter__(self) -> _InFlight:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def predict_case(
    *, case_id: int, model_version: ModelVersion | None = None, shadow: bool = False
) -> Prediction | None:
    """Run the model on one case and store its one Prediction; the case becomes ``done``.

    With ``shadow`` (another model version than the active one, for comparison) the prediction
    is stored flagged as a shadow run and the case's status is left alone.
    Idempotent: a case that already has a prediction from this model version is left as it is.
    Raises PermanentPredictionError for failures that retrying cannot fix.
    """
    model_version = model_version or active_model_version()
    with _InFlight() as in_flight:
        if not shadow and not in_flight.try_hold(case_id):
            # Another worker process has this case in its forward pass right now (it rode
            # along there). Meanwhile take other waiting cases; then wait for that pass.
            if model_version is not None:
                _predict_waiting(model_version, in_flight)
            in_flight.wait_hold(case_id)
        return _predict_claimed(case_id, model_version, shadow=shadow, in_flight=in_flight)


def _claim_waiting(model_version, in_flight, *, limit: int, exclude: int | None = None) -> list:
    """Up to ``limit`` waiting first-attempt cases, oldest first, that no one else has locked
    or has in flight (call inside a transaction; claiming them is the caller's)."""
    if limit <= 0:
        return []
    waiting = (
        Case.objects.select_for_update(skip_locked=True)
        .filter(status=CaseStatus.QUEUED, attempts=0, enqueued_at__isnull=False)
        .exclude(predictions__model_version=model_version)
        .order_by("enqueued_at", "pk")
    )
    if exclude is not None:
        waiting = waiting.exclude(pk=exclude)
    return [case for case in waiting[:limit] if in_flight.try_hold(case.pk)]


def _mark_claimed(cases: list) -> None:
    for claimed in cases:
        case_services.case_start_attempt(case=claimed)


def _predict_waiting(model_version: ModelVersion, in_flight: _InFlight) -> None:
    """While this process waits for another one's pass: one pass over other waiting cases.
    Its failures are those cases' own (their messages run them again, alone); they never fail
    the task that is waiting."""
    if settings.INFERENCE_BATCH_MAX <= 1:
        return
    with transaction.atomic():
        cases = _claim_waiting(model_version, in_flight, limit=settings.INFERENCE_BATCH_MAX)
        _mark_claimed(cases)
    if not cases:
        return
    try:
        _run_pass(cases, None, model_version, shadow=False)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning("a pass over waiting cases failed (%s); they run again alone", exc)
    finally:
        in_flight.release([case.pk for case in cases])


def _predict_claimed(
    case_id: int, model_version: ModelVersion | None, *, shadow: bool, in_flight: _InFlight
) -> Prediction | None:
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(pk=case_id).first()
        if case is None:
            logger.info("case %s no longer exists; nothing to predict", case_id)
            return None
        if model_version is None:
            raise PermanentPredictionError("No active model is registered.")
        existing = Prediction.objects.filter(case=case, model_version=model_version).first()
        if existing is not None:
            if case.status != CaseStatus.DONE and not existing.shadow:
                case_services.case_mark_done(case_id=case.pk)
            return existing
        if not shadow and case.attempts >= settings.PREDICT_MAX_ATTEMPTS:
            # Each attempt is counted before the model runs: a worker that died mid-inference
            # this often is being killed by this image. Set it aside so the queue moves on.
            raise PermanentPredictionError(
                f"The prediction was started {case.attempts} times and never finished (the "
                "worker stopped each time); this image is set aside for a person to look at."
            )
        cases = [case]
        if not shadow:
            # Micro-batching: other cases waiting right now ride along in the same forward pass
            # (their own messages, delivered later, find them done). Only first attempts: a
            # case that was already started runs alone, so a poison image can only spoil its
            # own attempts.
            if case.attempts == 0:
                cases += _claim_waiting(
                    model_version,
                    in_flight,
                    limit=settings.INFERENCE_BATCH_MAX - 1,
                    exclude=case.pk,
                )
            _mark_claimed(cases)
    return _run_pass(cases, case, model_version, shadow=shadow)[0]


def _run_pass(cases: list, primary: Case | None, model_version, *, shadow: bool) -> list:
    """Read the claimed cases' images, run them through the model in one pass, store each
    result, enqueue the heatmaps. An unreadable image fails its own case; only the
    ``primary`` case's raises."""
    started = time.perf_counter()
    predictor = _predictor_for(model_version)
    loaded, unreadable = [], []
    for claimed in cases:
        try:
            loaded.append((claimed, _load_case_image(claimed, predictor.preprocessing)))
        except PermanentPredictionError as exc:
            if primary is not None and claimed.pk == primary.pk:
                raise
            unreadable.append((claimed, exc))  # a companion's own problem: its own failure
    for claimed, exc in unreadable:
        case_services.case_mark_failed(case_id=claimed.pk, reason=str(exc))
    if not loaded:
        return []
    read = time.perf_counter()
    results = _predict_for_clinics(
        predictor, [image for _, image in loaded], [c for c, _ in loaded], model_version
    )
    inferred = time.perf_counter()
    predictions = [
        _store_prediction(claimed, model_version, result, shadow=shadow)
        for (claimed, _), result in zip(loaded, results, strict=True)
    ]
    stored = time.perf_counter()
    # The result is stored and shown first; its Grad-CAM heatmap follows as a task of its own
    # (queue "heatmaps": about two more passes through the model, and it needs PyTorch).
    for prediction in predictions:
        if settings.PREDICTION_HEATMAPS and not prediction.heatmap:
            enqueue_heatmap(prediction_id=prediction.pk)
    stages = (
        f"read {(read - started) * 1000:.0f} ms, model {(inferred - read) * 1000:.0f} ms, "
        f"store {(stored - inferred) * 1000:.0f} ms, "
        f"heatmap enqueue {(time.perf_counter() - stored) * 1000:.0f} ms"
    )
    if len(loaded) > 1:
        logger.info(
            "cases %s predicted in one pass of %d (%.0f ms each; %s)",
            ", ".join(str(c.pk) for c, _ in loaded),
            len(loaded),
            results[0].inference_ms,
            stages,
        )
    else:
        logger.info(
            "case %s done in %.0f ms (%s)", loaded[0][0].pk, results[0].inference_ms, stages
        )
    return predictions


def _predict_for_clinics(predictor, images, cases, model_version) -> list:
    """One forward pass for all the images; each result read with its clinic's threshold."""
    from ml.engine.serve.base import read_heads

    by_clinic = {c.clinic_id: clinic_thresholds(c.clinic_id, model_version) for c in cases}
    judged = []
    for case, result in zip(cases, predictor.predict_batch(images), strict=True):
        own = by_clinic[case.clinic_id]
        if own:
            result = read_heads(
                malignant_probability=result.malignant_probability,
                diagnosis_probabilities=result.diagnosis_probabilities,
                classes=predictor.classes,
                thresholds={**predictor.thresholds, **own},
                inference_ms=result.inference_ms,
            )
        judged.append(result)
    return judged


def _store_prediction(case: Case, model_version: ModelVersion, result, *, shadow: bool):
    with transaction.atomic():
        prediction, _ = Prediction.objects.update_or_create(
            case=case,
            model_version=model_version,
            defaults={
                "malignant_probability": result.malignant_probability,
                "malignant_threshold": result.malignant_threshold,
                "diagnosis_probabilities": result.diagnosis_probabilities,
                "top_diagnosis": result.top_diagnosis,
                "top_probability": result.top_probability,
                "category": result.category,
                "uncertain": result.uncertain,
                "inference_ms": result.inference_ms,
                "shadow": shadow,
            },
        )
        if not shadow:
            case_services.case_mark_done(case_id=case.pk)
            from diagnosis import webhooks

            webhooks.dispatch(
                clinic=case.clinic,
                event=webhooks.WebhookEvent.PREDICTION_COMPLETED,
                payload=prediction_payload(prediction),
            )
    return prediction


def enqueue_heatmap(*, prediction_id: int) -> bool:
    """Send a prediction to the heatmap queue; a broker outage is logged, and the sweeper
    (``requeue_stuck_cases``) sends it again later."""
    from ml.tasks import heatmap_task

    try:
        heatmap_task.apply_async(args=[prediction_id], retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds when the broker is down
        logger.warning("could not enqueue the heatmap of prediction %s (%s)", prediction_id, exc)
        return False
    return True


def prediction_heatmap_compute(*, prediction_id: int) -> bool:
    """Compute and store the Grad-CAM heatmap of a stored prediction (PyTorch, whatever the
    serving backend). Idempotent: a prediction that has one is left alone. Returns whether a
    heatmap was stored."""
    prediction = (
        Prediction.objects.select_related("case", "model_version").filter(pk=prediction_id).first()
    )
    if prediction is None or prediction.heatmap:
        return False
    predictor = _torch_predictor_for(prediction.model_version)
    image = _load_case_image(prediction.case, predictor.preprocessing)
    png = _heatmap_png(predictor, image)
    stored = None
    try:
        with transaction.atomic():
            locked = Prediction.objects.select_for_update().get(pk=prediction_id)
            if locked.heatmap:
                return False
            stored = _attach_heatmap(locked, png)
    except BaseException:
        if stored:  # the row that would name it was rolled back: leave no orphan
            Prediction.heatmap.field.storage.delete(stored)
        raise
    return True


def clinic_thresholds(clinic_id: int, model_version: ModelVersion) -> dict | None:
    """The clinic's chosen malignant threshold for this model, when it chose one."""
    from ml.models import ClinicOperatingPoint

    point = ClinicOperatingPoint.objects.filter(
        clinic_id=clinic_id, model_version=model_version
    ).first()
    return {"malignant": point.threshold} if point else None


def operating_point_choose(*, admin, clinic, model_version: ModelVersion, sensitivity: float):
    """A clinic admin picks the malignant threshold that reaches a validation sensitivity."""
    from django.core.exceptions import PermissionDenied, ValidationError

    from diagnosis.audit import audit_record
    from diagnosis.models import AuditAction, Membership, Role
    from ml.models import ClinicOperatingPoint

    if not Membership.objects.filter(user=admin, clinic=clinic, role=Role.CLINIC_ADMIN).exists():
        raise PermissionDenied("Only the clinic's admins choose its operating point.")
    point = model_version.operating_point_for(sensitivity)
    if point is None:
        raise ValidationError(
            "This model has no validation curve reaching that sensitivity."
            if model_version.validation_curve()
            else "This model was registered without a validation curve."
        )
    with transaction.atomic():
        chosen, _ = ClinicOperatingPoint.objects.update_or_create(
            clinic=clinic,
            model_version=model_version,
            defaults={**point, "chosen_by": admin},
        )
        audit_record(
            action=AuditAction.UPDATE,
            actor=admin,
            clinic=clinic,
            target=chosen,
            detail={"threshold": point["threshold"], "target_sensitivity": sensitivity},
        )
    return chosen


def _heatmap_png(predictor, image) -> bytes:
    from ml.engine.serve.gradcam import render_overlay

    cam = predictor.grad_cam(image)
    return render_overlay(
        cam, width=image.width, height=image.height, preprocessing=predictor.preprocessing
    )


def _attach_heatmap(prediction: Prediction, png: bytes) -> str:
    """Store the heatmap privately and name it on the prediction; returns the stored name.
    A heatmap it replaces is deleted once the transaction commits."""
    from django.core.files.base import ContentFile

    previous = prediction.heatmap.name or None
    storage = prediction.heatmap.storage
    prediction.heatmap.save("heatmap.png", ContentFile(png), save=False)
    stored = prediction.heatmap.name
    try:
        prediction.save(update_fields=["heatmap"])
    except BaseException:
        storage.delete(stored)
        raise
    if previous and previous != stored:
        transaction.on_commit(lambda: storage.delete(previous))
    return stored


def requeue_stuck_cases() -> int:
    """Enqueue again the cases that have waited too long (a lost message, a broker outage, a
    worker killed mid-task). Returns how many were sent."""
    cutoff = timezone.now() - timedelta(seconds=settings.CASE_REQUEUE_AFTER_SECONDS)
    processing_cutoff = timezone.now() - timedelta(seconds=settings.PREDICT_TIME_LIMIT * 2)
    stuck = Case.objects.filter(
        status=CaseStatus.QUEUED, enqueued_at__lt=cutoff
    ) | Case.objects.filter(status=CaseStatus.QUEUED, enqueued_at__isnull=True)
    stuck = stuck | Case.objects.filter(
        status=CaseStatus.PROCESSING, updated_at__lt=processing_cutoff
    )
    count = 0
    for case_id in stuck.values_list("pk", flat=True)[:1000]:
        if enqueue_prediction(case_id=case_id):
            count += 1
    if settings.PREDICTION_HEATMAPS:
        # Heatmaps whose message was lost: predictions of the last day still without one.
        missing = Prediction.objects.filter(
            heatmap="", created_at__lt=cutoff, created_at__gte=timezone.now() - timedelta(days=1)
        )
        for prediction_id in missing.values_list("pk", flat=True)[:1000]:
            if enqueue_heatmap(prediction_id=prediction_id):
                count += 1
    return count


# --- reviews ------------------------------------------------------------------------------


def review_submit(
    *, reviewer, prediction: Prediction, verdict: str, final_diagnosis: str = "", notes: str = ""
):
    """A dermatologist's opinion of a prediction: agree, override (with the final diagnosis, a
    class of the prediction's model) or send back (the image needs redoing). Several reviews
    per prediction are kept; each is audited."""
    from django.core.exceptions import PermissionDenied, ValidationError

    from diagnosis.audit import audit_record
    from diagnosis.models import AuditAction
    from diagnosis.selectors import user_can_review
    from ml.models import Review, Verdict

    clinic = prediction.case.clinic
    if not user_can_review(user=reviewer, clinic=clinic):
        raise PermissionDenied("Only dermatologists and clinic admins of this clinic can review.")
    if verdict not in Verdict.values:
        raise ValidationError({"verdict": f"Choose one of: {', '.join(Verdict.values)}."})
    codes = prediction.model_version.class_map()
    if verdict == Verdict.AGREE:
        final_diagnosis = prediction.top_diagnosis
    elif verdict == Verdict.OVERRIDE:
        if final_diagnosis not in codes:
            raise ValidationError(
                {
                    "final_diagnosis": "An override needs the final diagnosis, one of the model's "
                    f"classes: {', '.join(codes)}."
                }
            )
    else:
        final_diagnosis = ""
    with transaction.atomic():
        review = Review.objects.create(
            prediction=prediction,
            reviewer=reviewer,
            verdict=verdict,
            final_diagnosis=final_diagnosis,
            notes=notes.strip(),
        )
        audit_record(
            action=AuditAction.REVIEW,
            actor=reviewer,
            clinic=clinic,
            target=prediction.case,
            detail={"review": review.pk, "verdict": verdict},
        )
        from diagnosis import webhooks

        webhooks.dispatch(
            clinic=clinic,
            event=webhooks.WebhookEvent.REVIEW_CREATED,
            payload=review_payload(review),
        )
    return review


# --- shadow comparison ----------------------------------------------------------------------


def shadow_run_enqueue(*, case_ids: list[int], model_version: ModelVersion) -> int:
    """Re-run cases with another model version, for comparison; their shown results stay."""
    from ml.tasks import predict_case_task

    sent = 0
    for case_id in case_ids:
        try:
            predict_case_task.apply_async(
                args=[case_id],
                kwargs={"model_version_id": model_version.pk},
                retry=False,
            )
        except Exception as exc:  # noqa: BLE001 - a broker outage: report, don't crash
            logger.warning("could not enqueue shadow run of case %s: %s", case_id, exc)
        else:
            sent += 1
    return sent

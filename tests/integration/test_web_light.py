"""The web tier stays light: with a real broker, a web process never imports torch.

Workers run the model; gunicorn processes only render pages, answer the API and enqueue tasks
by name. The check runs in a fresh interpreter (this test process has torch loaded already), on
its own SQLite database, with CELERY_BROKER_URL pointing at a Redis database: nothing is
predicted there, and an unreachable Redis only leaves the case queued for the sweeper.
"""

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import io
    import os
    import sys

    HEAVY = ("torch", "torchvision", "onnxruntime")

    def assert_light(where):
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
        assert not loaded, f"{where} imported {loaded[:5]}"

    # What gunicorn loads: the WSGI module, which sets Django up.
    from skinsense_site.wsgi import application
    assert_light("django.setup() and the WSGI application")

    from django.conf import settings
    assert not settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL.startswith("redis")

    from django.core.management import call_command
    call_command("migrate", verbosity=0, interactive=False)

    from django.urls import get_resolver, reverse
    resolver = get_resolver()
    resolver.reverse_dict  # every URL pattern of every app (admin, API router, pages)
    for namespace in ("diagnosis", "ml", "api", "admin"):
        resolver.namespace_dict[namespace][1].reverse_dict
    import skinsense_site.urls  # noqa: F401
    assert_light("the URLconf")

    from django.contrib.auth import get_user_model
    from PIL import Image
    from diagnosis.models import Case, Clinic, Lesion, Membership, Patient
    from ml.models import ModelVersion, Prediction

    User = get_user_model()
    clinic = Clinic.objects.create(name="Light Clinic")
    user = User.objects.create_user("light", password="light-password-123")
    Membership.objects.create(user=user, clinic=clinic, role="dermatologist")
    staff = User.objects.create_superuser("auditor", password="light-password-123")
    model = ModelVersion.objects.create(
        name="rows-only", version="1", backbone="resnet18", is_active=True,
        classes=[{"code": "NV", "name": "Nevus", "category": "benign", "isic_diagnosis": "x"},
                 {"code": "MEL", "name": "Melanoma", "category": "malignant",
                  "isic_diagnosis": "y"}],
        weights_file="absent.pt", weights_sha256="0" * 64,
    )

    from django.test import Client

    def jpeg(color):
        buffer = io.BytesIO()
        Image.new("RGB", (320, 240), color).save(buffer, format="JPEG")
        buffer.seek(0)
        buffer.name = "lesion.jpg"
        return buffer

    # A real upload through the page: validated, stored, and enqueued by name on the broker.
    client = Client()
    client.force_login(user)
    response = client.post(
        reverse("diagnosis:case-new"),
        {
            "clinic": clinic.pk,
            "new_patient_identifier": "LIGHT-1",
            "new_patient_sex": "female",
            "new_lesion_label": "back",
            "image": jpeg((200, 100, 80)),
            "image_type": "dermoscopic",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    case = Case.objects.get()
    assert case.status == "queued" and case.enqueued_at is not None
    assert_light("uploading a case and enqueuing its prediction")

    Prediction.objects.create(
        case=case, model_version=model, malignant_probability=0.7, malignant_threshold=0.5,
        diagnosis_probabilities={"NV": 0.3, "MEL": 0.7}, top_diagnosis="MEL",
        top_probability=0.7, category="malignant", uncertain=False, inference_ms=5,
    )
    Case.objects.filter(pk=case.pk).update(status="done")
    patient = Patient.objects.get()

    anonymous = Client()
    assert anonymous.get("/accounts/login/").status_code == 200

    pages = [
        reverse("ml:dashboard"),
        reverse("diagnosis:patient-list"),
        reverse("ml:patient-detail", args=[patient.pk]),
        reverse("diagnosis:case-new"),
        reverse("ml:case-detail", args=[case.pk]),
        reverse("ml:case-status", args=[case.pk]),
        reverse("diagnosis:case-image", args=[case.pk]),
        reverse("diagnosis:case-thumbnail", args=[case.pk, 256]),
        reverse("ml:review-queue"),
        reverse("ml:review-case", args=[case.pk]),
        "/api/v1/patients/", "/api/v1/lesions/", "/api/v1/cases/",
        f"/api/v1/cases/{case.pk}/", "/api/v1/models/", "/api/v1/me/",
        "/api/v1/audit-events/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code in (200, 403), (url, response.status_code)
        if response.streaming:
            b"".join(response.streaming_content)
        assert_light(f"GET {url}")

    admin = Client()
    admin.force_login(staff)
    for url in ("/admin/", "/admin/ml/modelversion/", f"/admin/ml/modelversion/{model.pk}/change/",
                "/admin/ml/prediction/", "/admin/diagnosis/case/", "/api/schema/", "/api/docs/"):
        response = admin.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert_light(f"GET {url}")

    # The same through the WSGI callable gunicorn calls.
    from wsgiref.util import setup_testing_defaults
    environ = {"PATH_INFO": "/accounts/login/", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    environ["HTTP_HOST"] = "localhost"
    statuses = []
    body = b"".join(application(environ, lambda status, headers: statuses.append(status)))
    assert statuses[0].startswith("200") and b"password" in body

    from drf_spectacular.generators import SchemaGenerator
    assert SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert_light("generating the OpenAPI schema")

    # Every Django-facing module a web process may load (the pure-PyTorch ones are not).
    import importlib
    for module in (
        "ml.tasks", "ml.services", "ml.selectors", "ml.admin", "ml.api.cases",
        "ml.api.predictions", "ml.views.cases", "ml.views.review", "ml.views.account",
        "ml.services.notify",
        "ml.api.serializers", "ml.forms", "ml.reviewed_export", "ml.engine.eval.reviewed",
        "ml.engine.model.taxonomy",
        "diagnosis.admin", "diagnosis.api.views", "diagnosis.bulk", "diagnosis.webhooks",
        "diagnosis.tasks", "diagnosis.thumbnails",
        "ml.management.commands.register_model", "ml.management.commands.export_reviewed",
        "ml.management.commands.ensure_demo_model", "ml.management.commands.evaluate",
        "ml.management.commands.train", "ml.management.commands.seed_demo",
    ):
        importlib.import_module(module)
        assert_light(f"import {module}")
    print("LIGHT OK")
    """
)


def test_a_web_process_with_a_real_broker_never_imports_torch(tmp_path):
    prefix = f"skinsense-light-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skinsense_site.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'light.sqlite3'}",
        "SKINSENSE_VAR_DIR": str(tmp_path / "var"),
        "PRIVATE_MEDIA_ROOT": str(tmp_path / "private"),
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
        "CELERY_KEY_PREFIX": prefix,
        "CACHE_URL": "locmemcache://light",
        "DEBUG": "true",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    try:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        _forget_queued_messages(prefix)
    output = result.stdout[-3000:] + result.stderr[-6000:]
    assert result.returncode == 0, output
    assert "LIGHT OK" in result.stdout, output


def _forget_queued_messages(prefix: str) -> None:
    """The upload's task message went to Redis db 15 under a key prefix of its own."""
    try:
        import redis

        connection = redis.Redis.from_url("redis://127.0.0.1:6379/15", socket_timeout=2)
        for key in connection.scan_iter(f"{prefix}*"):
            connection.delete(key)
    except Exception:  # noqa: BLE001, S110 - no Redis: nothing was queued there
        pass

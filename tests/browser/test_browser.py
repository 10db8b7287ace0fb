"""Flows a person clicks through, in headless Chromium driven by Playwright.

Chromium comes from Debian's packages (`make test` installs it); Playwright never downloads a
browser here. Without Chromium these tests skip (and fail in CI).
"""

import os
import shutil
import threading
import time

import pytest
from django.urls import reverse

from diagnosis import services
from diagnosis.models import Case, CaseStatus
from ml.models import Review
from tests import images
from tests.conftest import require, upload
from tests.factories import PASSWORD, LesionFactory, PatientFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page(live_server, monkeypatch):  # noqa: ARG001 - a fixture asked for its effect
    require(os.path.exists(CHROMIUM), "needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are ordinary synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()


def log_in(page, live_server, username):
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")


@pytest.mark.usefixtures("clinic")
def test_a_clinician_uploads_an_image_for_a_new_patient_and_sees_the_result(
    browser_page, live_server, clinician, active_model, tmp_path, sample_jpeg_bytes
):
    image = tmp_path / "lesion.jpg"
    image.write_bytes(sample_jpeg_bytes)
    page = browser_page
    log_in(page, live_server, clinician.username)
    page.click("text=New case")
    page.fill("#id_new_patient_identifier", "BROWSER-1")
    page.fill("#id_new_lesion_label", "left forearm")
    page.set_input_files("#id_image", str(image))
    page.click("text=Submit for analysis")
    page.wait_for_selector(".verdict .big", timeout=30_000)
    assert "not a diagnosis" in page.content()
    assert str(active_model) in page.inner_text("#result")
    case = Case.objects.get(lesion__patient__identifier="BROWSER-1")
    assert case.status == CaseStatus.DONE


@pytest.mark.usefixtures("clinic", "active_model")
def test_a_double_click_on_submit_makes_one_case(
    browser_page, live_server, clinician, tmp_path, sample_jpeg_bytes
):
    image = tmp_path / "lesion.jpg"
    image.write_bytes(sample_jpeg_bytes)
    page = browser_page
    log_in(page, live_server, clinician.username)
    page.click("text=New case")
    # "— new patient —" offers no existing lesion at all.
    visible = page.eval_on_selector_all(
        "#id_lesion option", "options => options.filter(o => !o.hidden).map(o => o.value)"
    )
    assert visible == [""]
    page.fill("#id_new_patient_identifier", "DOUBLE-1")
    page.fill("#id_new_lesion_label", "left forearm")
    page.set_input_files("#id_image", str(image))
    page.dblclick("#submit-case")
    page.wait_for_selector(".verdict .big", timeout=30_000)
    assert Case.objects.filter(lesion__patient__identifier="DOUBLE-1").count() == 1


def test_the_case_page_updates_itself_when_the_prediction_arrives(
    browser_page,
    live_server,
    clinician,
    clinic,
    settings,
    small_checkpoint_file,
    tmp_path,
    monkeypatch,
):
    from skinsense_site.celery import app as celery_app

    settings.CASE_POLL_INTERVAL_MS = 300
    # No worker: the task message goes to an in-memory broker nobody consumes.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    case = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case
    page = browser_page
    log_in(page, live_server, clinician.username)
    page.goto(live_server.url + case.get_absolute_url())
    assert "Waiting for the model" in page.inner_text("#result-panel")

    def predict_later():
        from django.db import connection

        from ml.services import model_version_register, predict_case

        time.sleep(1)
        copy = tmp_path / "model.pt"
        shutil.copy(small_checkpoint_file, copy)
        model_version_register(path=copy, name="late", version="1", activate=True)
        predict_case(case_id=case.pk)
        connection.close()

    worker = threading.Thread(target=predict_later)
    worker.start()
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.wait_for_selector(".verdict .big", timeout=30_000)
    worker.join()
    assert navigations == []  # no reload: the panel was swapped in place
    assert page.inner_text("#case-status") == "Done"


@pytest.mark.usefixtures("active_model", "django_capture_on_commit_callbacks")
def test_a_dermatologist_overrides_a_case_and_it_leaves_the_queue(
    browser_page,
    live_server,
    clinician,
    colleague,
    clinic,
):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic, identifier="Q-7"))
    case = services.case_submit(
        user=clinician, lesion=lesion, upload=upload(images.jpeg_bytes())
    ).case
    from ml.services import predict_case

    predict_case(case_id=case.pk)
    page = browser_page
    log_in(page, live_server, colleague.username)
    page.click("nav >> text=Review")
    page.wait_for_url(live_server.url + reverse("ml:review-queue"))
    assert f"Case {case.pk}" in page.inner_text("#queue")
    page.click(f"text=Case {case.pk}")
    page.wait_for_url(live_server.url + reverse("ml:review-case", args=[case.pk]))
    page.keyboard.press("2")  # override, from the keyboard
    assert page.is_checked("input[name=verdict][value=override]")
    page.fill("#id_final_diagnosis", "MEL")  # a class code, or any ISIC term
    page.check("input[name=management][value=excision]")
    page.fill("#id_notes", "irregular network")
    page.click("text=Save review")
    page.wait_for_url(live_server.url + reverse("ml:review-queue"))
    assert f"Case {case.pk}" not in page.inner_text("#queue")
    review = Review.objects.get()
    assert (review.verdict, review.final_diagnosis, review.reviewer_id) == (
        "override",
        "MEL",
        colleague.pk,
    )

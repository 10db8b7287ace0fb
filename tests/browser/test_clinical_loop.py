"""The clinical loop (issue 11), walked through in headless Chromium: a clinician files an image,
a dermatologist reviews it, the clinician reads the review, answers a send-back with a new image,
and corrects records (move, withdraw) that a clinic admin and the audit trail then show.

Every walk runs at desktop and at phone width; each key page is checked for sideways scrolling and
saved as a screenshot in var/screenshots/clinical-loop/ (git-ignored) for a person to look at.
"""

import os
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from diagnosis import services
from diagnosis.models import AuditAction, AuditEvent, Case, Role
from ml.models import Review
from tests import images
from tests.browser.test_browser import CHROMIUM, LAUNCH_ARGS, log_in
from tests.conftest import require, upload
from tests.factories import LesionFactory, MembershipFactory, PatientFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "clinical-loop"
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request) -> str:
    return request.param


@pytest.fixture
def open_as(live_server, monkeypatch, viewport):
    """``open_as(user)``: a page of a browser of that person's own (own cookies), logged in
    through the login page, at the test's viewport."""
    require(os.path.exists(CHROMIUM), "needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are ordinary synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )

        def open_page(user):
            context = browser.new_context(viewport=VIEWPORTS[viewport])
            page = context.new_page()
            page.set_default_timeout(15_000)
            log_in(page, live_server, user.username)
            return page

        yield open_page
        browser.close()


def url(live_server, name: str, *args) -> str:
    return live_server.url + reverse(name, args=args)


def looks_right(page, name: str) -> None:
    """The page fits its width (no sideways scrolling of the body); saved as a screenshot."""
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{page.url} scrolls sideways by {overflow}px"
    # Every image in (lazy thumbnails too): none is cut off by the next page.
    page.wait_for_load_state("networkidle")
    width = page.viewport_size["width"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kind = "phone" if width < 700 else "desktop"
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{kind}.png"), full_page=True)


def in_sight(locator) -> None:
    """Visible and wholly inside the page's width once scrolled to (not off to the right of a
    table that scrolls sideways)."""
    locator.scroll_into_view_if_needed()
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    width = locator.page.viewport_size["width"]
    assert box is not None
    assert 0 <= box["x"] <= box["x"] + box["width"] <= width + 1, box


def usable(locator) -> None:
    in_sight(locator)
    expect(locator).to_be_enabled()


def visible_options(page, select: str) -> list[str]:
    return page.eval_on_selector_all(
        f"{select} option", "options => options.filter(o => !o.hidden).map(o => o.text)"
    )


def showing(page, selector: str) -> list[str]:
    """The id (else the data-management) of each element matching the selector that shows."""
    return page.eval_on_selector_all(
        selector,
        "els => els.filter(e => e.checkVisibility()).map(e => e.id || e.dataset.management)",
    )


def image_file(tmp_path, name: str, color: tuple[int, int, int]) -> str:
    path = tmp_path / name
    path.write_bytes(images.jpeg_bytes(size=(320, 240), color=color))
    return str(path)


def filed_case(clinician, lesion, *, notes="", color=(180, 90, 60)) -> Case:
    """A case filed by the service (its prediction runs eagerly, with the active model)."""
    content = images.jpeg_bytes(color=color)
    return services.case_submit(
        user=clinician, lesion=lesion, upload=upload(content), notes=notes
    ).case


# --- 1. a new patient's image -------------------------------------------------------------------


@pytest.mark.usefixtures("active_model")
def test_a_new_patients_image_offers_no_other_patients_lesion_and_refuses_one_forced_in(
    open_as, live_server, clinic, clinician, tmp_path
):
    other = LesionFactory(patient=PatientFactory(clinic=clinic, identifier="OTHER-1"))
    page = open_as(clinician)
    page.click("nav >> text=New case")
    page.wait_for_url(url(live_server, "diagnosis:case-new"))
    assert page.locator("#id_patient option:checked").inner_text() == "— new patient —"
    assert visible_options(page, "#id_lesion") == ["— new lesion —"]
    assert page.locator("#id_lesion option").count() == 2  # the other's is there, hidden
    page.fill("#id_new_patient_identifier", "LOOP-1")
    page.select_option("#id_new_patient_sex", label="Female")
    page.fill("#id_new_patient_year_of_birth", "1962")
    page.select_option("#id_new_patient_fitzpatrick_type", "II")
    page.fill("#id_new_lesion_label", "left forearm")
    page.select_option("#id_new_lesion_anatomic_site_region", label="Upper extremity")
    page.fill("#id_notes", "Grew over three months, itches.")
    page.set_input_files("#id_image", image_file(tmp_path, "forearm.jpg", (150, 80, 60)))
    looks_right(page, "1-new-case")

    # Forced in from the console: the other patient's lesion, enabled and chosen.
    page.eval_on_selector(
        "#id_lesion",
        """(select, value) => {
            const option = [...select.options].find(o => o.value === value);
            option.hidden = false; option.disabled = false; select.value = value;
        }""",
        str(other.pk),
    )
    page.click("#submit-case")
    page.wait_for_selector("[role=alert]")
    alert = page.inner_text("[role=alert]")
    assert "Nothing was saved" in alert
    assert "choose the image again" in alert
    expect(page.locator("form.form-grid .errorlist").first).to_contain_text(
        "A new patient has no lesions yet"
    )
    assert page.input_value("#id_new_patient_identifier") == "LOOP-1"
    assert page.input_value("#id_new_patient_year_of_birth") == "1962"
    assert page.input_value("#id_new_patient_fitzpatrick_type") == "II"
    assert page.input_value("#id_new_lesion_label") == "left forearm"
    assert page.input_value("#id_notes") == "Grew over three months, itches."
    assert page.input_value("#id_lesion") == ""  # the page put "— new lesion —" back
    assert visible_options(page, "#id_lesion") == ["— new lesion —"]
    assert page.eval_on_selector("#id_image", "input => input.files.length") == 0
    assert not Case.objects.exists()
    looks_right(page, "1-new-case-refused")

    page.set_input_files("#id_image", image_file(tmp_path, "forearm.jpg", (150, 80, 60)))
    usable(page.locator("#submit-case"))
    page.click("#submit-case")
    page.wait_for_selector(".verdict .big", timeout=30_000)
    case = Case.objects.get()
    assert page.url == live_server.url + case.get_absolute_url()
    assert (case.lesion.patient.identifier, case.lesion.label) == ("LOOP-1", "left forearm")
    assert "Image received and analysed" in page.inner_text(".messages")
    heading = page.inner_text("main")
    assert "Patient LOOP-1" in heading
    assert "lesion left forearm" in heading
    assert "Grew over three months, itches." in page.inner_text("main")
    looks_right(page, "1-case")


# --- 2. a review, and the clinician reading it ----------------------------------------------------


@pytest.mark.usefixtures("active_model")
def test_a_different_final_diagnosis_reaches_the_clinician_once(
    open_as, live_server, clinic, clinician, colleague
):
    patient = PatientFactory(
        clinic=clinic, identifier="REV-1", sex="female", year_of_birth=1958, fitzpatrick_type="III"
    )
    case = filed_case(
        clinician,
        LesionFactory(patient=patient, label="right cheek"),
        notes="New pigmented patch, irregular border.",
    )
    age = case.captured_at.year - 1958

    derm = open_as(colleague)
    derm.goto(url(live_server, "ml:review-case", case.pk))
    facts = derm.inner_text(".facts")
    assert "New pigmented patch, irregular border." in facts
    for shown in ("Female", f"{age}", "born 1958", "III"):
        assert shown in facts, shown
    verdict_fieldsets = ".review-form fieldset[data-verdicts]"
    assert showing(derm, verdict_fieldsets) == []  # nothing chosen yet: only the verdicts
    derm.get_by_label("Send back for a new image").check()
    assert showing(derm, verdict_fieldsets) == ["send-back-fields"]
    derm.get_by_label("Different final diagnosis").check()
    assert showing(derm, verdict_fieldsets) == ["final-diagnosis-fields", "management-fields"]
    diagnosis = derm.locator("#id_final_diagnosis")
    assert diagnosis.get_attribute("list") == "isic-diagnoses"
    assert derm.locator('#isic-diagnoses option[value="Melanoma in situ"]').count() == 1
    usable(diagnosis)
    diagnosis.press_sequentially("melanoma in situ")
    derm.get_by_label("Monitor (follow-up)").check()
    assert showing(derm, "[data-management]") == ["monitor"]  # "follow-up in (months)"
    derm.get_by_label("Excision", exact=True).check()
    assert showing(derm, "[data-management]") == []
    derm.fill("#id_notes", "Atypical network at the edge.")
    looks_right(derm, "2-review")
    usable(derm.get_by_role("button", name="Save review"))
    derm.get_by_role("button", name="Save review").click()
    derm.wait_for_url(url(live_server, "ml:review-queue"))
    assert f"Review of case {case.pk} saved." in derm.inner_text(".messages")
    review = Review.objects.get()
    assert (review.verdict, review.final_isic_diagnosis.split(":")[-1], review.management) == (
        "override",
        "Melanoma in situ",
        "excision",
    )

    page = open_as(clinician)
    unseen = page.locator("#reviewed-unseen")
    expect(unseen).to_contain_text(f"Case {case.pk}")
    expect(unseen).to_contain_text("Different final diagnosis: Melanoma in situ")
    expect(unseen).to_contain_text("Excision")
    in_sight(unseen.locator("td", has_text="Excision"))
    in_sight(page.locator("td", has_text="Reviewed: Different final diagnosis"))  # recent cases
    looks_right(page, "2-dashboard-reviewed")
    unseen.get_by_role("link", name=f"Case {case.pk}").click()
    page.wait_for_url(live_server.url + case.get_absolute_url())
    review_card = page.inner_text("#review")
    for shown in ("Different final diagnosis", "Melanoma in situ", "Excision"):
        assert shown in review_card, shown
    assert "Atypical network at the edge." in review_card
    looks_right(page, "2-case-reviewed")
    page.click("nav >> text=Dashboard")
    page.wait_for_url(live_server.url + "/")
    expect(page.locator("#reviewed-unseen")).to_have_count(0)


# --- 3. a send-back answered with a new image ---------------------------------------------------


@pytest.mark.usefixtures("active_model")
def test_a_send_back_is_answered_with_a_new_image_of_the_same_lesion(
    open_as, live_server, clinic, clinician, colleague, tmp_path
):
    lesion = LesionFactory(
        patient=PatientFactory(clinic=clinic, identifier="BACK-1"), label="left shin"
    )
    earlier = filed_case(clinician, lesion)

    derm = open_as(colleague)
    derm.goto(url(live_server, "ml:review-case", earlier.pk))
    derm.get_by_label("Send back for a new image").check()
    derm.get_by_label("Blurred or out of focus").check()
    derm.get_by_role("button", name="Save review").click()
    derm.wait_for_url(url(live_server, "ml:review-queue"))

    page = open_as(clinician)
    sent_back = page.locator("#sent-back")
    expect(sent_back).to_contain_text(f"Case {earlier.pk}")
    expect(sent_back).to_contain_text("BACK-1 · left shin")
    expect(sent_back).to_contain_text("Blurred or out of focus")
    looks_right(page, "3-dashboard-sent-back")
    add = sent_back.get_by_role("link", name="Add a new image of this lesion")
    usable(add)
    add.click()
    page.wait_for_url(url(live_server, "diagnosis:case-new") + f"?follows={earlier.pk}")
    banner = page.inner_text(".banner.info")
    for shown in (f"case {earlier.pk}", "left shin", "BACK-1"):
        assert shown in banner, shown
    assert page.input_value("#id_patient") == str(lesion.patient_id)
    assert page.input_value("#id_lesion") == str(lesion.pk)
    expect(page.locator("[data-new-for=id_patient]")).to_be_hidden()
    expect(page.locator("[data-new-for=id_lesion]")).to_be_hidden()
    page.set_input_files("#id_image", image_file(tmp_path, "sharp.jpg", (120, 70, 50)))
    looks_right(page, "3-new-case-follows")
    page.click("#submit-case")
    page.wait_for_selector(".verdict .big", timeout=30_000)
    answer = Case.objects.exclude(pk=earlier.pk).get()
    assert (answer.lesion_id, answer.follows_id) == (lesion.pk, earlier.pk)
    assert page.url == live_server.url + answer.get_absolute_url()
    assert f"This image answers case {earlier.pk}" in page.inner_text("main")

    page.click(f"main >> text=case {earlier.pk}")
    page.wait_for_url(live_server.url + earlier.get_absolute_url())
    assert f"Answered by case {answer.pk}" in page.inner_text("main")
    expect(page.get_by_role("link", name="Add a new image of this lesion")).to_have_count(0)
    looks_right(page, "3-case-answered")
    page.click("nav >> text=Dashboard")
    page.wait_for_url(live_server.url + "/")
    expect(page.locator("#sent-back")).to_have_count(0)


# --- 4. correcting records: move, withdraw, and where they show ---------------------------------


def the_audit_trail_shows(open_as, live_server, *, action, label, case, reason) -> None:
    """Staff read the event in the admin's audit event list, and its reason on its page."""
    auditor = UserFactory(username="auditor", is_staff=True, is_superuser=True)
    page = open_as(auditor)
    events = live_server.url + "/admin/diagnosis/auditevent/"
    page.goto(f"{events}?action__exact={action}")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    for text in ("clin", label, "case", str(case.pk), "North Clinic"):
        expect(row).to_contain_text(text)
    looks_right(page, f"4-audit-list-{action}")
    page.goto(f"{events}{AuditEvent.objects.get(action=action).pk}/change/")
    expect(page.locator("#content")).to_contain_text(reason)
    looks_right(page, f"4-audit-event-{action}")


@pytest.mark.usefixtures("active_model")
def test_a_case_moved_to_another_lesion_says_so_and_is_in_the_audit_trail(
    open_as, live_server, clinic, clinician
):
    patient = PatientFactory(clinic=clinic, identifier="MOVE-1")
    moved = filed_case(clinician, LesionFactory(patient=patient, label="left forearm"))
    right = LesionFactory(patient=patient, label="right forearm")

    page = open_as(clinician)
    page.goto(live_server.url + moved.get_absolute_url())
    page.get_by_role("link", name="Move to another lesion").click()
    page.wait_for_url(url(live_server, "diagnosis:case-move", moved.pk))
    assert visible_options(page, "#id_lesion")[1] == "MOVE-1 — right forearm (Trunk)"
    page.select_option("#id_lesion", str(right.pk))
    page.click("text=Move the case")  # no reason given
    assert "The case was not moved" in page.inner_text("[role=alert]")
    assert "This field is required." in page.inner_text("form.form-grid")
    assert page.input_value("#id_lesion") == str(right.pk)
    page.fill("#id_reason", "Filed under the wrong arm.")
    looks_right(page, "4-move")
    usable(page.get_by_role("button", name="Move the case"))
    page.click("text=Move the case")
    page.wait_for_url(live_server.url + moved.get_absolute_url())
    assert "now filed under “right forearm” of patient MOVE-1" in page.inner_text(".messages")
    assert "lesion right forearm" in page.inner_text("main")

    the_audit_trail_shows(
        open_as,
        live_server,
        action=AuditAction.MOVE,
        label="Moved",
        case=moved,
        reason="Filed under the wrong arm.",
    )


@pytest.mark.usefixtures("active_model")
def test_a_withdrawn_case_leaves_the_clinicians_lists_and_shows_to_the_clinic_admin(
    open_as, live_server, clinic, clinician
):
    admin = MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN, user__username="boss").user
    patient = PatientFactory(clinic=clinic, identifier="GONE-1")
    kept = filed_case(clinician, LesionFactory(patient=patient, label="back"))
    withdrawn = filed_case(clinician, LesionFactory(patient=patient, label="neck"), color=(9, 9, 9))

    page = open_as(clinician)
    page.goto(live_server.url + withdrawn.get_absolute_url())
    page.get_by_role("link", name="Withdraw", exact=True).click()
    page.wait_for_url(url(live_server, "diagnosis:case-withdraw", withdrawn.pk))
    assert "Nothing is deleted" in page.inner_text(".confirm")
    page.fill("#id_reason", "Photo of another patient.")
    looks_right(page, "4-withdraw")
    usable(page.get_by_role("button", name="Withdraw the case"))
    page.get_by_role("button", name="Withdraw the case").click()
    page.wait_for_url(url(live_server, "ml:patient-detail", patient.pk))
    assert f"Case {withdrawn.pk} was withdrawn" in page.inner_text(".messages")
    gone = f'a[href="{withdrawn.get_absolute_url()}"]'
    expect(page.locator(gone)).to_have_count(0)
    expect(page.locator(f'a[href="{kept.get_absolute_url()}"]').first).to_be_visible()
    looks_right(page, "4-patient-after-withdraw")
    page.click("nav >> text=Dashboard")
    page.wait_for_url(live_server.url + "/")
    expect(page.locator(f'a[href="{kept.get_absolute_url()}"]').first).to_be_visible()
    expect(page.locator(gone)).to_have_count(0)
    response = page.goto(live_server.url + withdrawn.get_absolute_url())
    assert response.status == 404
    assert "Not found" in page.inner_text("main")

    boss = open_as(admin)
    boss.click("text=North Clinic — withdrawn cases")
    boss.wait_for_url(url(live_server, "diagnosis:withdrawn-cases", clinic.pk))
    entry = boss.inner_text(".withdrawn-case")
    assert "GONE-1" in entry
    assert "by clin: Photo of another patient." in entry
    expect(boss.locator(".withdrawn-case")).to_have_count(1)
    looks_right(boss, "4-withdrawn-cases")

    the_audit_trail_shows(
        open_as,
        live_server,
        action=AuditAction.WITHDRAW,
        label="Withdrawn",
        case=withdrawn,
        reason="Photo of another patient.",
    )


# --- 5. a double click ------------------------------------------------------------------------


@pytest.mark.usefixtures("active_model")
@pytest.mark.parametrize("viewport", ["desktop"], indirect=True)
def test_a_double_click_on_submit_files_one_case(open_as, live_server, clinic, clinician, tmp_path):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic, identifier="TWICE-1"))
    page = open_as(clinician)
    page.goto(url(live_server, "diagnosis:case-new") + f"?patient={lesion.patient_id}")
    page.select_option("#id_lesion", str(lesion.pk))
    page.set_input_files("#id_image", image_file(tmp_path, "twice.jpg", (90, 60, 40)))
    page.dblclick("#submit-case")
    page.wait_for_selector(".verdict .big", timeout=30_000)
    case = Case.objects.get()
    assert page.url == live_server.url + case.get_absolute_url()

    # Again with the page's own guard gone (a stale script, say): the form_token still lands
    # the second submit on the first one's case.
    page.goto(url(live_server, "diagnosis:case-new") + f"?patient={lesion.patient_id}")
    page.select_option("#id_lesion", str(lesion.pk))
    page.set_input_files("#id_image", image_file(tmp_path, "again.jpg", (60, 90, 40)))
    landed = page.evaluate(
        """async () => {
            const body = new FormData(document.querySelector("form.form-grid"));
            const send = () => fetch(location.href, {method: "POST", body}).then(r => r.url);
            return [await send(), await send()];
        }"""
    )
    second = Case.objects.exclude(pk=case.pk).get()
    assert landed == [live_server.url + second.get_absolute_url()] * 2
    assert Case.objects.count() == 2

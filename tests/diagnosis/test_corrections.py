"""Correcting records (diagnosis.corrections): who may correct what, the audit of each
correction, and a withdrawn case gone from every list, queue, export, metric and the worker."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from diagnosis import corrections, selectors, services
from diagnosis.models import AuditAction, AuditEvent, Case, Patient, Role
from ml import selectors as ml_selectors
from tests import images
from tests.conftest import upload
from tests.factories import LesionFactory, MembershipFactory, PatientFactory, predicted_case

pytestmark = pytest.mark.django_db

REASON = "Typed wrongly at the front desk."


@pytest.fixture
def clinic_admin(clinic):
    return MembershipFactory(clinic=clinic, role=Role.CLINIC_ADMIN, user__username="boss").user


@pytest.fixture
def case(clinic, clinician, active_model):
    return predicted_case(clinic, clinician, active_model)


def reviewed(case, reviewer, verdict="agree"):
    from ml.services.review import review_submit

    sent_back = verdict == "send_back"
    review_submit(
        reviewer=reviewer,
        prediction=case.predictions.get(),
        verdict=verdict,
        management="" if sent_back else "no_action",
        send_back_reason="blurry" if sent_back else "",
    )
    return case


def last_event(action) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-pk").first()


def queued_case(clinic, user) -> Case:
    """A case still waiting for the model (its message was never sent: no eager run here)."""
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
    return services.case_submit(
        user=user, lesion=lesion, upload=upload(images.jpeg_bytes(color=(9, 9, 9)))
    ).case


# --- patients and lesions ------------------------------------------------------------------


def test_a_clinician_corrects_a_patient_and_the_audit_has_reason_and_values(clinician, case):
    patient = case.lesion.patient
    corrections.patient_update(
        user=clinician,
        patient=patient,
        reason=f"  {REASON} ",
        identifier="MRN-NEW-1",
        sex="male",
        year_of_birth=1971,
        fitzpatrick_type="III",
    )
    patient.refresh_from_db()
    assert (patient.identifier, patient.sex, patient.year_of_birth, patient.fitzpatrick_type) == (
        "MRN-NEW-1",
        "male",
        1971,
        "III",
    )
    event = last_event(AuditAction.UPDATE)
    assert (event.actor, event.target_type, event.target_id) == (
        clinician,
        "patient",
        str(patient.pk),
    )
    assert event.detail["reason"] == REASON
    changes = event.detail["changes"]
    assert changes["sex"] == {"before": "female", "after": "male"}
    assert changes["year_of_birth"] == {"before": 1970, "after": 1971}
    assert changes["fitzpatrick_type"] == {"before": "", "after": "III"}
    # The audit trail never holds patient identifiers: only that it changed.
    assert changes["identifier"] == {"changed": True}
    assert "MRN-NEW-1" not in str(event.detail)


def test_a_correction_needs_a_reason_and_a_change(clinician, case):
    patient = case.lesion.patient
    for reason in ("", "   ", None):
        with pytest.raises(ValidationError) as refused:
            corrections.patient_update(user=clinician, patient=patient, reason=reason, sex="male")
        assert "reason" in refused.value.message_dict
    with pytest.raises(ValidationError, match="Nothing to change"):
        corrections.patient_update(user=clinician, patient=patient, reason=REASON, sex="female")
    assert not AuditEvent.objects.filter(action=AuditAction.UPDATE).exists()


def test_an_identifier_used_in_the_clinic_is_a_clear_error(clinician, clinic, case):
    other = PatientFactory(clinic=clinic, identifier="TAKEN-1")
    patient = case.lesion.patient
    with pytest.raises(ValidationError) as refused:
        corrections.patient_update(
            user=clinician, patient=patient, reason=REASON, identifier=" TAKEN-1 "
        )
    assert refused.value.message_dict == {
        "identifier": ["This clinic already has a patient with this identifier."]
    }
    # Another clinic may use it.
    elsewhere = PatientFactory(identifier="TAKEN-2")
    corrections.patient_update(
        user=clinician, patient=patient, reason=REASON, identifier=elsewhere.identifier
    )
    other.refresh_from_db()
    assert other.identifier == "TAKEN-1"


def test_a_year_of_birth_in_the_future_is_refused(clinician, case):
    with pytest.raises(ValidationError) as refused:
        corrections.patient_update(
            user=clinician, patient=case.lesion.patient, reason=REASON, year_of_birth=2999
        )
    assert "year_of_birth" in refused.value.message_dict


def test_an_outsider_corrects_nothing(outsider, case):
    with pytest.raises(PermissionDenied):
        corrections.patient_update(
            user=outsider, patient=case.lesion.patient, reason=REASON, sex="male"
        )
    with pytest.raises(PermissionDenied):
        corrections.lesion_update(user=outsider, lesion=case.lesion, reason=REASON, label="x")
    with pytest.raises(PermissionDenied):
        corrections.case_withdraw(user=outsider, case=case, reason=REASON)


def test_a_lesion_is_corrected_and_its_label_stays_unique(clinician, case):
    lesion = case.lesion
    LesionFactory(patient=lesion.patient, label="back, left")
    corrections.lesion_update(
        user=clinician,
        lesion=lesion,
        reason=REASON,
        label="chest, right",
        anatomic_site="Trunk:Anterior trunk",
    )
    lesion.refresh_from_db()
    assert (lesion.label, lesion.anatomic_site) == ("chest, right", "Trunk:Anterior trunk")
    assert last_event(AuditAction.UPDATE).detail["changes"]["anatomic_site"] == {
        "before": "Trunk",
        "after": "Trunk:Anterior trunk",
    }
    with pytest.raises(ValidationError) as clash:
        corrections.lesion_update(user=clinician, lesion=lesion, reason=REASON, label="back, left")
    assert clash.value.message_dict == {
        "label": ["This patient already has a lesion with this label."]
    }
    with pytest.raises(ValidationError) as bad_site:
        corrections.lesion_update(
            user=clinician, lesion=lesion, reason=REASON, anatomic_site="Elbow of Mars"
        )
    assert "anatomic_site" in bad_site.value.message_dict


# --- moving a case -------------------------------------------------------------------------


def test_a_case_filed_under_the_wrong_patient_moves_to_the_right_one(clinician, clinic, case):
    wrong_patient = case.lesion.patient
    right = LesionFactory(patient=PatientFactory(clinic=clinic))
    before = case.lesion_id
    corrections.case_move(user=clinician, case=case, lesion=right, reason=REASON)
    case.refresh_from_db()
    assert case.lesion == right
    event = last_event(AuditAction.MOVE)
    assert event.target_id == str(case.pk)
    assert event.detail == {
        "reason": REASON,
        "lesion": {"before": before, "after": right.pk},
        "patient": {"before": wrong_patient.pk, "after": right.patient_id},
    }
    timeline = ml_selectors.patient_timeline(right.patient)
    assert [c.pk for lesion in timeline for c in lesion.case_list] == [case.pk]
    assert all(not lesion.case_list for lesion in ml_selectors.patient_timeline(wrong_patient))


def test_a_case_does_not_move_to_another_clinic_or_onto_the_same_image(
    clinician, clinic, other_clinic, case
):
    foreign = LesionFactory(patient=PatientFactory(clinic=other_clinic))
    with pytest.raises(ValidationError) as refused:
        corrections.case_move(user=clinician, case=case, lesion=foreign, reason=REASON)
    assert refused.value.message_dict == {"lesion": ["No such lesion in this case's clinic."]}
    with pytest.raises(ValidationError, match="already filed under this lesion"):
        corrections.case_move(user=clinician, case=case, lesion=case.lesion, reason=REASON)
    # The target lesion already has the same image.
    target = LesionFactory(patient=PatientFactory(clinic=clinic))
    image = images.jpeg_bytes(color=(0, 50, 60))  # predicted_case's image (seed 0)
    twin = services.case_submit(user=clinician, lesion=target, upload=upload(image)).case
    with pytest.raises(ValidationError, match=f"case {twin.pk}"):
        corrections.case_move(user=clinician, case=case, lesion=target, reason=REASON)
    case.refresh_from_db()
    assert case.lesion.patient.clinic == clinic
    assert not AuditEvent.objects.filter(action=AuditAction.MOVE).exists()


# --- withdrawing and restoring -------------------------------------------------------------


def test_a_clinician_withdraws_an_unreviewed_case(clinician, case):
    corrections.case_withdraw(user=clinician, case=case, reason=REASON)
    withdrawn = Case.all_objects.get(pk=case.pk)
    assert withdrawn.is_withdrawn
    assert (withdrawn.withdrawn_by, withdrawn.withdrawal_reason) == (clinician, REASON)
    event = last_event(AuditAction.WITHDRAW)
    assert (event.actor, event.target_id) == (clinician, str(case.pk))
    assert event.detail == {"reason": REASON, "status": "done", "reviewed": False}
    with pytest.raises(ValidationError, match="already withdrawn"):
        corrections.case_withdraw(user=clinician, case=withdrawn, reason=REASON)


def test_a_reviewed_case_is_withdrawn_by_a_clinic_admin_only(
    clinician, colleague, clinic_admin, case
):
    reviewed(case, colleague)
    for member in (clinician, colleague):
        with pytest.raises(PermissionDenied, match="only a clinic admin"):
            corrections.case_withdraw(user=member, case=case, reason=REASON)
    assert not Case.all_objects.get(pk=case.pk).is_withdrawn
    corrections.case_withdraw(user=clinic_admin, case=case, reason=REASON)
    assert last_event(AuditAction.WITHDRAW).detail["reviewed"] is True


def test_only_a_clinic_admin_restores_and_the_audit_keeps_the_withdrawal(
    clinician, clinic_admin, case
):
    corrections.case_withdraw(user=clinician, case=case, reason="Blurred.")
    withdrawn = Case.all_objects.get(pk=case.pk)
    with pytest.raises(PermissionDenied):
        corrections.case_restore(user=clinician, case=withdrawn, reason=REASON)
    with pytest.raises(ValidationError):
        corrections.case_restore(user=clinic_admin, case=withdrawn, reason=" ")
    corrections.case_restore(user=clinic_admin, case=withdrawn, reason="Withdrawn by mistake.")
    restored = Case.objects.get(pk=case.pk)
    assert (restored.withdrawn_at, restored.withdrawn_by, restored.withdrawal_reason) == (
        None,
        None,
        "",
    )
    event = last_event(AuditAction.RESTORE)
    assert event.actor == clinic_admin
    assert event.detail["reason"] == "Withdrawn by mistake."
    assert event.detail["before"]["withdrawn_by"] == clinician.pk
    assert event.detail["before"]["withdrawal_reason"] == "Blurred."
    with pytest.raises(ValidationError, match="not withdrawn"):
        corrections.case_restore(user=clinic_admin, case=restored, reason=REASON)
    # Every step is in the trail.
    actions = AuditEvent.objects.filter(target_type="case", target_id=str(case.pk))
    assert {AuditAction.WITHDRAW, AuditAction.RESTORE} <= set(
        actions.values_list("action", flat=True)
    )


def test_a_withdrawn_image_may_be_filed_again_and_then_the_old_case_stays_withdrawn(
    clinician, clinic_admin, case
):
    corrections.case_withdraw(user=clinician, case=case, reason=REASON)
    image = images.jpeg_bytes(color=(0, 50, 60))  # the same bytes as the withdrawn case
    again = services.case_submit(user=clinician, lesion=case.lesion, upload=upload(image))
    assert again.created
    assert again.case.pk != case.pk
    with pytest.raises(ValidationError, match=f"case {again.case.pk}"):
        corrections.case_restore(
            user=clinic_admin, case=Case.all_objects.get(pk=case.pk), reason=REASON
        )


def test_a_restored_case_waiting_for_the_model_is_queued_again(
    clinician, clinic, clinic_admin, case, django_capture_on_commit_callbacks
):
    waiting = queued_case(clinic, clinician)
    corrections.case_withdraw(user=clinician, case=waiting, reason=REASON)
    with django_capture_on_commit_callbacks() as callbacks:
        corrections.case_restore(
            user=clinic_admin, case=Case.all_objects.get(pk=waiting.pk), reason=REASON
        )
    assert len(callbacks) == 1
    corrections.case_withdraw(user=clinician, case=case, reason=REASON)
    with django_capture_on_commit_callbacks() as callbacks:
        corrections.case_restore(
            user=clinic_admin, case=Case.all_objects.get(pk=case.pk), reason=REASON
        )
    assert callbacks == []  # done: nothing to predict


# --- a withdrawn case is in no list, queue, export or metric -------------------------------


def test_a_withdrawn_case_leaves_the_lists_of_the_pages(clinician, colleague, clinic_admin, case):
    patient = case.lesion.patient
    corrections.case_withdraw(user=clinician, case=case, reason=REASON)
    for user in (clinician, colleague, clinic_admin):
        assert not selectors.cases_for_user(user).filter(pk=case.pk).exists()
        assert not ml_selectors.cases_for_user(user).filter(pk=case.pk).exists()
        listed = selectors.patients_for_user(user).get(pk=patient.pk)
        assert (listed.lesion_count, listed.case_count) == (1, 0)
        dashboard = ml_selectors.dashboard_for_user(user)
        assert dashboard["counts"]["total"] == 0
        assert case.pk not in [c.pk for c in dashboard["recent_cases"]]
        assert case.pk not in [c.pk for c in dashboard["awaiting_review"]]
    assert all(not lesion.case_list for lesion in ml_selectors.patient_timeline(patient))
    # Its clinic's admins still reach it (its page, its image), nobody else.
    assert selectors.cases_for_user(clinic_admin, include_withdrawn=True).filter(pk=case.pk)
    for user in (clinician, colleague):
        assert not selectors.cases_for_user(user, include_withdrawn=True).filter(pk=case.pk)
    assert list(selectors.withdrawn_cases(user=clinic_admin)) == [Case.all_objects.get(pk=case.pk)]
    assert not selectors.withdrawn_cases(user=clinician).exists()


def test_a_withdrawn_case_leaves_the_review_queue_exports_and_figures(
    clinician, colleague, clinic_admin, clinic, active_model
):
    from ml.reviewed_export import reviewed_rows

    kept = reviewed(predicted_case(clinic, clinician, active_model, seed=1), colleague)
    gone = reviewed(predicted_case(clinic, clinician, active_model, seed=2), colleague)
    unreviewed = predicted_case(clinic, clinician, active_model, seed=3)
    sent_back = reviewed(
        predicted_case(clinic, clinician, active_model, seed=4), colleague, "send_back"
    )
    assert ml_selectors.sent_back_count(active_model) == 1
    corrections.case_withdraw(user=clinic_admin, case=gone, reason=REASON)
    corrections.case_withdraw(user=clinic_admin, case=sent_back, reason=REASON)
    corrections.case_withdraw(user=clinician, case=unreviewed, reason=REASON)

    queue = ml_selectors.review_queue(colleague, state="all")
    assert [p.case_id for p in queue] == [kept.pk]
    assert [row.case.pk for row in reviewed_rows()] == [kept.pk]
    assert len(ml_selectors.reviewed_predictions(active_model)) == 1
    assert ml_selectors.sent_back_count(active_model) == 0


def test_a_withdrawn_case_leaves_the_comparison_of_two_model_versions(
    clinician, clinic, active_model
):
    from ml.models import ModelVersion, Prediction

    other = ModelVersion.objects.get(pk=active_model.pk)
    other.pk, other.version, other.is_active = None, "2", False
    other.save()
    cases = [predicted_case(clinic, clinician, active_model, seed=s) for s in (1, 2)]
    for case in cases:
        shadow = case.predictions.get()
        shadow.pk, shadow.model_version, shadow.shadow = None, other, True
        shadow.top_diagnosis, shadow.category = "MEL", "malignant"
        shadow.save()
    assert ml_selectors.model_comparison(active_model, other)["compared"] == 2
    corrections.case_withdraw(user=clinician, case=cases[0], reason=REASON)
    comparison = ml_selectors.model_comparison(active_model, other)
    assert comparison["compared"] == 1
    assert [d["case"].pk for d in comparison["disagreements"]] == [cases[1].pk]
    assert Prediction.objects.filter(case=cases[0]).count() == 2  # kept, not counted


def test_the_worker_and_the_sweeper_leave_a_withdrawn_case_alone(
    clinician, clinic, active_model, monkeypatch
):
    from ml.services import batching, sweeper
    from ml.services.prediction import predict_case

    waiting = queued_case(clinic, clinician)
    corrections.case_withdraw(user=clinician, case=waiting, reason=REASON)
    assert predict_case(case_id=waiting.pk) is None
    withdrawn = Case.all_objects.get(pk=waiting.pk)
    assert (withdrawn.status, withdrawn.attempts) == ("queued", 0)
    assert not withdrawn.predictions.exists()

    sent = []
    monkeypatch.setattr(sweeper, "enqueue_prediction", lambda case_id: sent.append(case_id) or 1)
    sweeper.requeue_stuck_cases()
    assert waiting.pk not in sent
    Case.all_objects.filter(pk=waiting.pk).update(enqueued_at=withdrawn.created_at)
    with batching.InFlight() as in_flight:
        assert batching.claim_waiting(active_model, in_flight, limit=8) == []


# --- merging two records of one person -----------------------------------------------------


def test_two_records_of_one_person_are_merged(clinician, clinic, active_model):
    kept = PatientFactory(clinic=clinic, sex="unknown", year_of_birth=1970, fitzpatrick_type="")
    duplicate = PatientFactory(clinic=clinic, sex="female", year_of_birth=1971)
    duplicate.fitzpatrick_type = "II"
    duplicate.save()
    case = predicted_case(clinic, clinician, active_model)
    lesion = case.lesion
    lesion.patient = duplicate
    lesion.save()
    earlier = PatientFactory(clinic=clinic)
    earlier.merged_into, earlier.merged_at = duplicate, duplicate.created_at
    earlier.save()

    result = corrections.patients_merge(
        user=clinician, target=kept, duplicate=duplicate, reason="Registered twice."
    )
    assert result == kept
    lesion.refresh_from_db()
    assert lesion.patient == kept
    assert list(ml_selectors.cases_for_user(clinician).filter(lesion__patient=kept)) == [case]
    kept.refresh_from_db()
    # Blanks filled from the duplicate; where both have a value, the kept record's stays.
    assert (kept.sex, kept.year_of_birth, kept.fitzpatrick_type) == ("female", 1970, "II")
    merged = Patient.all_objects.get(pk=duplicate.pk)
    assert merged.merged_into == kept
    assert merged.merged_at is not None
    assert Patient.all_objects.get(pk=earlier.pk).merged_into == kept
    # The merged record leaves the lists; its identifier finds the record kept.
    assert not selectors.patients_for_user(clinician).filter(pk=duplicate.pk).exists()
    found = selectors.patients_for_user(clinician, search=duplicate.identifier)
    assert list(found) == [kept]
    # Its identifier stays taken.
    with pytest.raises(ValidationError):
        services.patient_create(user=clinician, clinic=clinic, identifier=duplicate.identifier)

    on_kept = AuditEvent.objects.get(action=AuditAction.MERGE, target_id=str(kept.pk))
    assert on_kept.detail["merged"] == duplicate.pk
    assert on_kept.detail["lesions"] == [lesion.pk]
    assert on_kept.detail["cases"] == 1
    assert on_kept.detail["filled"]["sex"] == {"before": "unknown", "after": "female"}
    assert on_kept.detail["kept"]["year_of_birth"] == {"kept": 1970, "dropped": 1971}
    on_merged = AuditEvent.objects.get(action=AuditAction.MERGE, target_id=str(duplicate.pk))
    assert on_merged.detail == {"reason": "Registered twice.", "merged_into": kept.pk}
    assert duplicate.identifier not in str(on_kept.detail)


def test_a_merge_is_refused_for_one_record_another_clinic_or_clashing_labels(
    clinician, clinic, other_clinic
):
    patient = PatientFactory(clinic=clinic)
    with pytest.raises(ValidationError, match="into itself"):
        corrections.patients_merge(user=clinician, target=patient, duplicate=patient, reason="x")
    with pytest.raises(ValidationError, match="No such patient"):
        corrections.patients_merge(
            user=clinician,
            target=patient,
            duplicate=PatientFactory(clinic=other_clinic),
            reason="x",
        )
    other = PatientFactory(clinic=clinic)
    LesionFactory(patient=patient, label="back")
    LesionFactory(patient=other, label="back")
    with pytest.raises(ValidationError, match="“back”"):
        corrections.patients_merge(user=clinician, target=patient, duplicate=other, reason="x")
    assert Patient.objects.filter(pk=other.pk).exists()
    assert not AuditEvent.objects.filter(action=AuditAction.MERGE).exists()

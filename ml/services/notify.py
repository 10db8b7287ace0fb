"""E-mail about reviews, for the users who opted in: the clinician who filed a case hears that
it was reviewed. The e-mail says which case and the verdict, with a link; never the patient's
record number, the diagnosis or the notes (e-mail leaves the platform's access control)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from diagnosis.queue import send_task
from ml.models import NotificationPreference, Review

REVIEW_EMAIL_TASK = "ml.tasks.review_email_task"


def wants_review_emails(user) -> bool:
    return bool(
        user is not None
        and user.is_active
        and user.email
        and NotificationPreference.objects.filter(user=user, review_emails=True).exists()
    )


def review_email_enqueue(review: Review) -> None:
    """After the review commits, send its e-mail (by the worker) when the filer opted in."""
    filer = review.prediction.case.submitted_by
    if filer is None or filer.pk == review.reviewer_id or not wants_review_emails(filer):
        return
    transaction.on_commit(
        lambda: send_task(REVIEW_EMAIL_TASK, f"the e-mail of review {review.pk}", review.pk)
    )


def review_email_send(*, review_id: int) -> bool:
    """Send the e-mail of one review; False when there is nothing to send (any more)."""
    review = (
        Review.objects.select_related("prediction__case__submitted_by").filter(pk=review_id).first()
    )
    if review is None:
        return False
    case = review.prediction.case
    filer = case.submitted_by
    if filer is None or not wants_review_emails(filer):
        return False  # opted out since
    link = settings.SITE_URL + reverse("ml:case-detail", args=[case.pk])
    send_mail(
        subject=f"SkinSense: case {case.pk} was reviewed",
        message=(
            f"A dermatologist reviewed case {case.pk}: {review.get_verdict_display()}.\n\n"
            f"Open the case to read the review: {link}\n\n"
            "You get this e-mail because you asked for it; turn it off under "
            f"{settings.SITE_URL + reverse('ml:notifications')}."
        ),
        from_email=None,
        recipient_list=[filer.email],
    )
    return True

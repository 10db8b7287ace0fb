"""Signals of the clinical records: the audit of logins, and ``case_queued`` for the model.

``case_queued`` is how a case reaches the model without ``diagnosis`` knowing it: it is sent
after the transaction that submitted (or retried) a case commits, with ``case_id``; the ``ml``
app connects the receiver that enqueues the prediction.
"""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import Signal, receiver

from diagnosis.audit import audit_record
from diagnosis.models import AuditAction

case_queued = Signal()  # kwargs: case_id


@receiver(user_logged_in, dispatch_uid="audit_login")
def _logged_in(*, user, **kwargs):
    audit_record(action=AuditAction.LOGIN, actor=user, target=user, target_type="user")


@receiver(user_logged_out, dispatch_uid="audit_logout")
def _logged_out(*, user, **kwargs):
    if user is not None:
        audit_record(action=AuditAction.LOGOUT, actor=user, target=user, target_type="user")


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(*, credentials, **kwargs):
    # Only the attempted username is kept (Django has already masked the password).
    audit_record(
        action=AuditAction.LOGIN_FAILED,
        actor_username=str(credentials.get("username", ""))[:150],
        target_type="user",
    )

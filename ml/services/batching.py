"""Micro-batching across worker processes: the cases a process has in its forward pass are
held as PostgreSQL session-level advisory locks, so that another process whose message is for
such a case waits for that pass instead of predicting it twice; other waiting cases ride along
in a pass. A process that dies releases its locks with its connection."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from diagnosis import services as case_services
from diagnosis.models import Case, CaseStatus
from ml.models import ModelVersion
from ml.services.passes import run_pass

logger = logging.getLogger(__name__)


class InFlight:
    """The cases this process is predicting right now, one advisory lock each. Elsewhere
    (SQLite: eager tasks in one process) every hold succeeds at once."""

    KEY = 0x5353_0000_0000_0000  # this application's part of the advisory-lock key space

    def __init__(self) -> None:
        self.enabled = connection.vendor == "postgresql"
        self.held: set[int] = set()

    def _execute(self, function: str, case_id: int) -> Any:
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

    def release(self, case_ids: Iterable[int] | None = None) -> None:
        for case_id in list(self.held if case_ids is None else case_ids):
            if case_id not in self.held:
                continue
            self.held.discard(case_id)
            try:
                self._execute("pg_advisory_unlock", case_id)
            except DatabaseError:  # the connection is gone, and its locks with it
                pass

    def __enter__(self) -> InFlight:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_waiting(
    model_version: ModelVersion, in_flight: InFlight, *, limit: int, exclude: int | None = None
) -> list[Case]:
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


def mark_claimed(cases: list[Case]) -> None:
    for claimed in cases:
        case_services.case_start_attempt(case=claimed)


def predict_waiting(model_version: ModelVersion, in_flight: InFlight) -> None:
    """While this process waits for another one's pass: one pass over other waiting cases.
    Its failures are those cases' own (their messages run them again, alone); they never fail
    the task that is waiting."""
    if settings.INFERENCE_BATCH_MAX <= 1:
        return
    with transaction.atomic():
        cases = claim_waiting(model_version, in_flight, limit=settings.INFERENCE_BATCH_MAX)
        mark_claimed(cases)
    if not cases:
        return
    try:
        run_pass(cases, None, model_version, shadow=False)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning("a pass over waiting cases failed (%s); they run again alone", exc)
    finally:
        in_flight.release([case.pk for case in cases])

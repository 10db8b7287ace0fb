"""The API's corrections of cases: move to another lesion, withdraw, restore, and the withdrawn
cases of the clinics you administer. The routes sit beside ``ml.api.cases`` under
``/api/v1/cases/``; the case with its prediction is ``GET /api/v1/cases/{id}/``.

Moving and withdrawing look the case up among your clinics' cases (not withdrawn); restoring
and the withdrawn list among the withdrawn cases of the clinics you administer: anything else
is a 404.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from diagnosis import corrections, selectors
from diagnosis.api.serializers import (
    CaseMoveSerializer,
    CaseReasonSerializer,
    CaseRecordSerializer,
)
from diagnosis.models import Case

WITHDRAWN_IS_FOR_ADMINS = "Withdrawn cases are for clinic admins."


def _answer(description: str) -> dict:
    return {200: OpenApiResponse(CaseRecordSerializer, description=description)}


class CaseCorrectionViewSet(viewsets.GenericViewSet):
    serializer_class = CaseRecordSerializer
    django_error_field = {"move": "lesion", "withdraw": "detail", "restore": "detail"}
    documented_errors = {
        "move": {
            400: (
                "No reason, the same lesion, a lesion of another clinic (“not found”), or that "
                "lesion already has this image.",
                {"lesion": ["No such lesion in this case's clinic."]},
            )
        },
        "withdraw": {
            400: (
                "No reason, or the case is already withdrawn.",
                {"reason": ["Say why: the reason is kept in the audit trail."]},
            ),
            403: corrections.REVIEWED_NEEDS_ADMIN,
        },
        "restore": {
            400: (
                "No reason, or the same image of the lesion was filed again since.",
                {"reason": ["Say why: the reason is kept in the audit trail."]},
            ),
            404: "No such withdrawn case in a clinic you administer.",
        },
        "withdrawn": {403: WITHDRAWN_IS_FOR_ADMINS},
    }

    def get_queryset(self):
        user = self.request.user
        if getattr(self, "swagger_fake_view", False):
            return Case.objects.none()
        if self.action in ("restore", "withdrawn"):
            if self.action == "withdrawn" and not selectors.user_is_clinic_admin(user=user):
                raise PermissionDenied(WITHDRAWN_IS_FOR_ADMINS)
            return selectors.withdrawn_cases(user=user)
        return selectors.cases_for_user(user).order_by("-created_at")

    def _record(self, case: Case) -> Response:
        fresh = Case.all_objects.select_related("lesion", "withdrawn_by").get(pk=case.pk)
        return Response(CaseRecordSerializer(fresh).data)

    @extend_schema(
        request=CaseMoveSerializer,
        responses=_answer("The case, filed under its new lesion."),
        summary="Move the case to another lesion of its clinic",
    )
    @action(detail=True, methods=["post"], serializer_class=CaseMoveSerializer)
    def move(self, request, **kwargs):
        case = self.get_object()
        serializer = CaseMoveSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        moved = corrections.case_move(user=request.user, case=case, **serializer.validated_data)
        return self._record(moved)

    @extend_schema(
        request=CaseReasonSerializer,
        responses=_answer("The withdrawn case (from now on only clinic admins see it)."),
        summary="Withdraw the case (a reviewed case: clinic admins)",
    )
    @action(detail=True, methods=["post"], serializer_class=CaseReasonSerializer)
    def withdraw(self, request, **kwargs):
        return self._with_reason(request, corrections.case_withdraw)

    @extend_schema(
        request=CaseReasonSerializer,
        responses=_answer("The case, back in every list."),
        summary="Restore a withdrawn case (clinic admins)",
    )
    @action(detail=True, methods=["post"], serializer_class=CaseReasonSerializer)
    def restore(self, request, **kwargs):
        return self._with_reason(request, corrections.case_restore)

    def _with_reason(self, request, correction) -> Response:
        case = self.get_object()
        serializer = CaseReasonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._record(correction(user=request.user, case=case, **serializer.validated_data))

    @extend_schema(
        responses=CaseRecordSerializer(many=True),
        summary="Withdrawn cases of the clinics you administer",
    )
    @action(detail=False, methods=["get"], serializer_class=CaseRecordSerializer)
    def withdrawn(self, _request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(CaseRecordSerializer(page, many=True).data)

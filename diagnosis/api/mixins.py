"""Behaviour shared by the API's viewsets."""

from rest_framework import mixins
from rest_framework.response import Response

from diagnosis.audit import audit_record
from diagnosis.models import AuditAction


class AuditedRetrieveMixin(mixins.RetrieveModelMixin):
    """Every API read of one clinical object goes into the audit trail."""

    def retrieve(self, request, *args, **kwargs):
        instance = self.get_object()
        audit_record(
            action=AuditAction.VIEW, actor=request.user, target=instance, detail={"via": "api"}
        )
        return Response(self.get_serializer(instance).data)

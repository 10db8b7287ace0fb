"""Tokens: obtain (throttled, audited), revoke; and who am I."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from diagnosis.audit import audit_record
from diagnosis.models import AuditAction, Membership

TokenResponse = inline_serializer("TokenResponse", {"token": serializers.CharField()})


class TokenView(ObtainAuthToken):
    """``POST`` username + password → a token; ``DELETE`` (authenticated) revokes it."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    def get_authenticators(self):
        # Only DELETE authenticates: a stale token header must not stop a client logging in.
        if getattr(self.request, "method", None) == "DELETE":
            from rest_framework.authentication import TokenAuthentication

            return [TokenAuthentication()]
        return []

    def get_permissions(self):
        return [IsAuthenticated()] if getattr(self.request, "method", None) == "DELETE" else []

    @extend_schema(responses={200: TokenResponse, 400: OpenApiResponse(description="Bad login")})
    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        user = Token.objects.get(key=response.data["token"]).user
        audit_record(action=AuditAction.LOGIN, actor=user, target=user, detail={"via": "api"})
        return response

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, *args, **kwargs):
        Token.objects.filter(user=request.user).delete()
        audit_record(
            action=AuditAction.LOGOUT,
            actor=request.user,
            target=request.user,
            detail={"via": "api"},
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClinicRoleSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="clinic.id")
    name = serializers.CharField(source="clinic.name")

    class Meta:
        model = Membership
        fields = ["id", "name", "role"]


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(help_text="May be empty.")
    clinics = ClinicRoleSerializer(many=True, source="memberships.all")


class MeView(APIView):
    """The current user and the clinics they belong to, with their role in each."""

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        return Response(MeSerializer(request.user).data)

"""Tokens: obtain (throttled, audited), revoke; and who am I."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from diagnosis.api import examples
from diagnosis.api.throttling import ScopedRateThrottle
from diagnosis.audit import audit_record
from diagnosis.lockout import cool_off_seconds, lockout_message
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

    documented_errors = {
        "post": {
            400: (
                "Bad login: wrong username or password, or a field is missing.",
                {"non_field_errors": ["Unable to log in with provided credentials."]},
            ),
            429: (
                "Too many token requests, or this username is locked out from your address "
                "after repeated failed logins: wait for Retry-After seconds.",
                {
                    "detail": "Too many failed logins for this user from your address. "
                    "Try again in 30 minutes."
                },
            ),
        },
    }

    @extend_schema(
        request=AuthTokenSerializer, responses={200: TokenResponse}, examples=examples.TOKEN
    )
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            # django-axes counted the failure (authenticate() was given this request); once the
            # username is locked out from this address, say so instead of "bad login".
            if getattr(request, "axes_locked_out", False):
                return Response(
                    {"detail": lockout_message(request)},
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(cool_off_seconds(request))},
                )
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        audit_record(action=AuditAction.LOGIN, actor=user, target=user, detail={"via": "api"})
        return Response({"token": token.key})

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

    @extend_schema(responses=MeSerializer, examples=examples.ME)
    def get(self, request):
        return Response(MeSerializer(request.user).data)

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache
from django.core.validators import RegexValidator
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from treasury import services
from treasury.auth import RefreshSerializer
from treasury.errors import error_body
from treasury.fields import InputSerializer
from treasury.models import SELF_SERVICE_ROLES, User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "role", "display_name", "is_active", "created_at"]
        read_only_fields = fields


class SignupSerializer(InputSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(
        write_only=True,
        trim_whitespace=False,  # a password is what was typed
        min_length=8,
        validators=[RegexValidator(r"^[^\x00]*$", "must not contain NUL characters")],
        max_length=128,
        help_text="at least 8 characters, not all digits, not a common password, not like the"
        " email or name",
    )
    role = serializers.ChoiceField(choices=[r.value for r in SELF_SERVICE_ROLES])
    display_name = serializers.CharField(max_length=120, required=False, default="")


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class SignupResponseSerializer(serializers.Serializer):
    user = UserSerializer()
    tokens = TokenPairSerializer()


def token_pair(user: User) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


class SignupView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(request=SignupSerializer, responses={201: SignupResponseSerializer})
    def post(self, request: Request) -> Response:
        data = SignupSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.register_user(**data.validated_data)
        body = {"user": UserSerializer(user).data, "tokens": token_pair(user)}
        return Response(body, status=status.HTTP_201_CREATED)


class LoginView(TokenObtainPairView):
    """Email and password in, an access and a refresh token out."""


class RefreshView(TokenRefreshView):
    """A refresh token in, a new access token out. Called without an access header (that
    expired), so the token's user is read under its own context (treasury.auth)."""

    serializer_class = RefreshSerializer  # type: ignore[assignment]


class MeView(APIView):
    @extend_schema(responses=UserSerializer)
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)

    @extend_schema(
        responses={204: None, 409: dict},
        description="Erase my personal data (GDPR): the account is pseudonymised and closed,"
        " financial records stay. 409 while a payout is unsettled or a dispute is open.",
    )
    def delete(self, request: Request) -> Response:
        from privacy.services import erase_user

        erase_user(user=request.user, actor=request.user)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Health ---


def database_status() -> dict[str, Any]:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    pending = MigrationExecutor(connection).migration_plan(
        MigrationExecutor(connection).loader.graph.leaf_nodes()
    )
    return {
        "ok": not pending,
        "latency_ms": latency_ms,
        "pending_migrations": [f"{m.app_label}.{m.name}" for m, _ in pending],
    }


def job_cluster_status() -> dict[str, Any]:
    from django_q.status import Stat

    clusters = [
        {"cluster_id": str(s.cluster_id), "status": s.status, "workers": len(s.workers)}
        for s in Stat.get_all()
    ]
    return {"ok": bool(clusters), "clusters": clusters, "cache": cache.__class__.__name__}


# Later issues add ledger verification and Stripe reachability here: name -> probe.
HEALTH_PROBES: dict[str, Any] = {"database": database_status, "jobs": job_cluster_status}


def run_health_probes() -> tuple[bool, dict[str, Any]]:
    results: dict[str, Any] = {}
    for name, probe in HEALTH_PROBES.items():
        try:
            results[name] = probe()
        except Exception as exc:  # a probe that fails is a finding, not a crash
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return all(r["ok"] for r in results.values()), results


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unhealthy"])
    error = serializers.DictField(required=False, help_text="when unhealthy: the failing checks")
    checks = serializers.DictField(required=False, help_text="admins only: each check's result")


class HealthView(APIView):
    """Public: {"status": "ok"} or 503. Admins also get every probe's details."""

    permission_classes = [AllowAny]

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request: Request) -> Response:
        healthy, results = run_health_probes()
        body: dict[str, Any] = {"status": "ok" if healthy else "unhealthy"}
        if not healthy:
            failing = ", ".join(name for name, result in results.items() if not result["ok"])
            body.update(error_body("unhealthy", f"failing checks: {failing}"))
        if getattr(request.user, "is_admin", False):
            body["checks"] = results
        return Response(body, status=status.HTTP_200_OK if healthy else 503)

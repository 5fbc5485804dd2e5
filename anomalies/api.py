"""The review queue over HTTP (admins only): list anomalies, resolve one with a note."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from anomalies import selectors, services
from anomalies.detectors import DETECTORS
from anomalies.models import Anomaly, Severity
from treasury.errors import Forbidden
from treasury.fields import InputSerializer
from treasury.pagination import Pagination


class AnomalySerializer(serializers.ModelSerializer):
    user_id = serializers.UUIDField(allow_null=True)
    resolved_by_id = serializers.UUIDField(allow_null=True)
    related_entry_id = serializers.IntegerField(allow_null=True)
    resolved = serializers.SerializerMethodField()

    class Meta:
        model = Anomaly
        fields = [
            "id",
            "detector",
            "severity",
            "score",
            "subject_type",
            "subject_id",
            "user_id",
            "related_entry_id",
            "description",
            "features",
            "observed_at",
            "flagged_at",
            "resolved",
            "resolved_at",
            "resolved_by_id",
            "resolution_note",
        ]
        read_only_fields = fields

    def get_resolved(self, anomaly: Anomaly) -> bool:
        return anomaly.resolved_at is not None


class AnomalyFilterSerializer(InputSerializer):
    severity = serializers.ChoiceField(choices=Severity.values, required=False)
    detector = serializers.ChoiceField(choices=[], required=False, help_text="a detector's name")
    resolved = serializers.ChoiceField(choices=["true", "false"], required=False)
    date = serializers.DateField(required=False, help_text="flagged on this day (UTC)")
    from_ = serializers.DateTimeField(required=False, help_text="flagged at or after")
    to = serializers.DateTimeField(required=False, help_text="flagged before")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["detector"].choices = sorted(DETECTORS)  # all registered by now

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("from") and attrs.get("to") and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"to": ["must be after from"]})
        return attrs


class ResolveSerializer(InputSerializer):
    id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    note = serializers.CharField(
        max_length=4000, help_text="why it is resolved (not only white space)"
    )


def _require_admin(request: Request) -> None:
    if not getattr(request.user, "is_admin", False):
        raise Forbidden("only admins may review anomalies")


class AnomaliesView(APIView):
    """GET: the review queue, most severe and highest scored first (admins only)."""

    pagination_class = Pagination

    @extend_schema(parameters=[AnomalyFilterSerializer], responses=AnomalySerializer(many=True))
    def get(self, request: Request) -> Response:
        _require_admin(request)
        query = AnomalyFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        f = query.validated_data
        resolved = {"true": True, "false": False}.get(f.get("resolved", ""))
        rows = selectors.review_queue(
            severity=f.get("severity"),
            detector=f.get("detector"),
            resolved=resolved,
            on=f.get("date"),
            flagged_from=f.get("from"),
            flagged_to=f.get("to"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(AnomalySerializer(page, many=True).data)


class ResolveAnomalyView(APIView):
    """POST {id, note}: close an anomaly (admins only; audited)."""

    @extend_schema(request=ResolveSerializer, responses=AnomalySerializer)
    def post(self, request: Request) -> Response:
        _require_admin(request)
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        anomaly = services.resolve_anomaly(
            anomaly_id=body.validated_data["id"],
            actor=request.user,
            note=body.validated_data["note"],
        )
        return Response(AnomalySerializer(anomaly).data)

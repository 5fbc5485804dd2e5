"""`GET /api/reports/analytics`: daily aggregates (admins: the platform or any user;
hosts and artists: their own rows; another user's id is a 404)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from analytics.models import DailyAggregate
from treasury.fields import CurrencyField
from treasury.replica import replica_reads


class DailyAggregateSerializer(serializers.ModelSerializer):
    user_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = DailyAggregate
        fields = [
            "day",
            "currency",
            "user_id",
            "gross_volume_cents",
            "platform_fee_cents",
            "refunds_cents",
            "disputes_cents",
            "payouts_cents",
            "charge_count",
            "computed_at",
        ]
        read_only_fields = fields


class AnalyticsFilterSerializer(serializers.Serializer):
    # `from` is a Python keyword: mapped in to_internal_value().
    from_ = serializers.DateField(required=False)
    to = serializers.DateField(required=False)
    currency = CurrencyField(required=False)
    userId = serializers.UUIDField(required=False)
    scope = serializers.ChoiceField(choices=["platform", "users"], default="platform")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        data = data.copy()
        if "from" in data:
            data["from_"] = data.pop("from")[0] if hasattr(data, "getlist") else data.pop("from")
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("from_") and attrs.get("to") and attrs["from_"] > attrs["to"]:
            raise serializers.ValidationError({"to": ["must not be before from"]})
        return attrs


class AnalyticsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("from", str, description="first day (YYYY-MM-DD, UTC), inclusive"),
            OpenApiParameter("to", str, description="last day (YYYY-MM-DD, UTC), inclusive"),
            OpenApiParameter("currency", str, description="ISO 4217 code"),
            OpenApiParameter(
                "userId", str, description="admins: one user's rows; others: their own id only"
            ),
            OpenApiParameter(
                "scope",
                str,
                enum=["platform", "users"],
                description="admins: the platform's totals (default) or every user's rows",
            ),
        ],
        responses=DailyAggregateSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = AnalyticsFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        f = query.validated_data
        paginator = LimitOffsetPagination()
        with replica_reads(user=request.user):
            rows = selectors.daily_aggregates(
                viewer=request.user,
                user_id=f.get("userId"),
                per_user=f["scope"] == "users",
                currency=f.get("currency"),
                day_from=f.get("from_"),
                day_to=f.get("to"),
            )
            page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DailyAggregateSerializer(page, many=True).data)

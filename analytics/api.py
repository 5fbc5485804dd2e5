"""`GET /api/reports/analytics`: daily aggregates (admins: the platform or any user;
hosts and artists: their own rows; another user's id is a 404)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from analytics.models import DailyAggregate
from treasury.fields import CurrencyField, InputSerializer, VisibleUserField
from treasury.pagination import Pagination
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


class AnalyticsFilterSerializer(InputSerializer):
    from_ = serializers.DateField(required=False, help_text="first day (UTC), inclusive")
    to = serializers.DateField(required=False, help_text="last day (UTC), inclusive")
    currency = CurrencyField(required=False)
    userId = VisibleUserField(
        required=False,
        help_text="admins: one user's rows; others: their own id only (another user's is a 404)",
    )
    scope = serializers.ChoiceField(
        choices=["platform", "users"],
        default="platform",
        help_text="admins: the platform's totals (default) or every user's rows",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("from") and attrs.get("to") and attrs["from"] > attrs["to"]:
            raise serializers.ValidationError({"to": ["must not be before from"]})
        return attrs


class AnalyticsView(APIView):
    pagination_class = Pagination

    @extend_schema(
        parameters=[AnalyticsFilterSerializer], responses=DailyAggregateSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        query = AnalyticsFilterSerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        f = query.validated_data
        paginator = self.pagination_class()
        with replica_reads(user=request.user):
            rows = selectors.daily_aggregates(
                viewer=request.user,
                user_id=f.get("userId"),
                per_user=f["scope"] == "users",
                currency=f.get("currency"),
                day_from=f.get("from"),
                day_to=f.get("to"),
            )
            page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DailyAggregateSerializer(page, many=True).data)

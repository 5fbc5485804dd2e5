"""Payouts API: initiate, status (list or one), one by id, and the available balance."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payouts import selectors, services
from payouts.models import Payout, PayoutMethod, PayoutStatus
from treasury.fields import CurrencyField, InputSerializer, MinorUnitsField
from treasury.pagination import Pagination, page_of


class AmountOrAllField(MinorUnitsField):
    """A positive integer of minor units, or "all" (None: everything available)."""

    def to_internal_value(self, data: Any) -> int | None:
        if data == "all":
            return None
        return super().to_internal_value(data)

    def openapi_schema(self) -> dict[str, Any]:
        return {
            "oneOf": [super().openapi_schema(), {"type": "string", "enum": ["all"]}],
            "description": "minor units (e.g. cents), or 'all' for the whole available balance",
        }


class InitiateSerializer(InputSerializer):
    amount_cents = AmountOrAllField()
    currency = CurrencyField()
    method = serializers.ChoiceField(choices=PayoutMethod.choices, default=PayoutMethod.STANDARD)


class PayoutSerializer(serializers.ModelSerializer):
    net_cents = serializers.IntegerField(read_only=True)
    user_id = serializers.UUIDField(read_only=True)
    ledger_transaction_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Payout
        fields = [
            "id",
            "user_id",
            "status",
            "method",
            "source",
            "amount_cents",
            "fee_cents",
            "net_cents",
            "currency",
            "risk_score",
            "idempotency_key",
            "ledger_transaction_id",
            "stripe_transfer_id",
            "stripe_payout_id",
            "reversed_cents",
            "failure_code",
            "failure_reason",
            "initiated_at",
            "completed_at",
        ]
        read_only_fields = fields


class PayoutFilterSerializer(InputSerializer):
    id = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="one payout (another user's is a 404)",
    )
    status = serializers.ChoiceField(choices=PayoutStatus.choices, required=False)
    currency = CurrencyField(required=False)
    method = serializers.ChoiceField(choices=PayoutMethod.choices, required=False)
    from_ = serializers.DateTimeField(required=False, help_text="initiated at or after")
    to = serializers.DateTimeField(required=False, help_text="initiated before")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("from") and attrs.get("to") and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"to": ["must be after from"]})
        return attrs


class AvailableQuerySerializer(InputSerializer):
    currency = CurrencyField(required=False)


class PayoutBalanceSerializer(serializers.Serializer):
    currency = serializers.CharField()
    available_cents = serializers.IntegerField()
    payable_cents = serializers.IntegerField()
    maturing_cents = serializers.IntegerField()
    in_flight_cents = serializers.IntegerField()
    debt_cents = serializers.IntegerField()


class PayoutBalanceListSerializer(serializers.Serializer):
    results = PayoutBalanceSerializer(many=True)


class InitiateView(APIView):
    """A host or artist with a completed connected account asks to be paid out."""

    @extend_schema(
        request=InitiateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="the same key and body return the first payout (200); the same"
                " key with another body is a 409",
            )
        ],
        responses={201: PayoutSerializer, 200: PayoutSerializer},
    )
    def post(self, request: Request) -> Response:
        body = InitiateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        payout = services.initiate_payout(
            user=request.user,
            amount_cents=body.validated_data["amount_cents"],
            currency=body.validated_data["currency"],
            method=body.validated_data["method"],
            idempotency_key=request.headers.get("Idempotency-Key") or f"api:{uuid.uuid4()}",
        )
        replayed = payout.was_replayed  # type: ignore[attr-defined]
        return Response(
            PayoutSerializer(payout).data,
            status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED,
        )


PayoutPage = page_of(PayoutSerializer, "PayoutPageSerializer")


class StatusView(APIView):
    """The caller's payouts (every payout, for an admin), newest first; `?id=` for one."""

    pagination_class = Pagination

    @extend_schema(
        parameters=[PayoutFilterSerializer],
        responses=PolymorphicProxySerializer(
            component_name="PayoutOrPayouts",
            serializers=[PayoutSerializer, PayoutPage],
            resource_type_field_name=None,
        ),
    )
    def get(self, request: Request) -> Response:
        query = PayoutFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        f = query.validated_data
        if "id" in f:
            payout = selectors.payout_for(user=request.user, payout_id=f["id"])
            return Response(PayoutSerializer(payout).data)
        rows = selectors.payouts_for(
            user=request.user,
            status=f.get("status"),
            currency=f.get("currency"),
            method=f.get("method"),
            initiated_from=f.get("from"),
            initiated_to=f.get("to"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(PayoutSerializer(page, many=True).data)


class DetailView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("payout_id", int, OpenApiParameter.PATH)],
        responses=PayoutSerializer,
    )
    def get(self, request: Request, payout_id: str) -> Response:
        payout = selectors.payout_for(user=request.user, payout_id=int(payout_id))
        return Response(PayoutSerializer(payout).data)


class AvailableView(APIView):
    """What the caller may be paid out now, per currency (or in `?currency=`)."""

    @extend_schema(parameters=[AvailableQuerySerializer], responses=PayoutBalanceListSerializer)
    def get(self, request: Request) -> Response:
        query = AvailableQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        currency = query.validated_data.get("currency")
        currencies = [currency] if currency else selectors.payout_currencies(user=request.user)
        rows = [selectors.payout_balance(user=request.user, currency=c) for c in currencies]
        return Response({"results": PayoutBalanceSerializer(rows, many=True).data})

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger import selectors, services
from ledger.models import LedgerEntry, LedgerTransaction, Side
from treasury.fields import CurrencyField, InputSerializer, MinorUnitsField, VisibleUserField
from treasury.pagination import Pagination


class EntrySerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.code")
    idempotency_key = serializers.CharField(source="transaction.idempotency_key")
    user_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "transaction_id",
            "idempotency_key",
            "account",
            "user_id",
            "amount_cents",
            "currency",
            "type",
            "event_source",
            "reference_id",
            "created_at",
        ]
        read_only_fields = fields


class EntryFilterSerializer(InputSerializer):
    userId = VisibleUserField(
        required=False, help_text="your own id; admins: any user's (another user's is a 404)"
    )
    currency = CurrencyField(required=False)
    event_source = serializers.CharField(required=False, max_length=64)
    reference_id = serializers.CharField(required=False, max_length=255)
    account = serializers.CharField(required=False, max_length=200, help_text="an account code")
    from_ = serializers.DateTimeField(required=False, help_text="created at or after")
    to = serializers.DateTimeField(required=False, help_text="created before")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("from") and attrs.get("to") and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"to": ["must be after from"]})
        return attrs


class BalanceFilterSerializer(InputSerializer):
    userId = VisibleUserField(
        required=False, help_text="your own id; admins: any user's (another user's is a 404)"
    )
    currency = CurrencyField(required=False)


class AdjustmentLineSerializer(InputSerializer):
    account = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=Side.values)
    amount_cents = MinorUnitsField()
    currency = CurrencyField()


class AdjustmentSerializer(InputSerializer):
    idempotency_key = serializers.CharField(max_length=255, required=False)
    reason = serializers.CharField(max_length=2000)
    reference_id = serializers.CharField(max_length=255, required=False, allow_null=True)
    entries = serializers.ListField(child=AdjustmentLineSerializer(), min_length=2, max_length=100)


class TransactionSerializer(serializers.ModelSerializer):
    entries = EntrySerializer(many=True, read_only=True)

    class Meta:
        model = LedgerTransaction
        fields = [
            "id",
            "idempotency_key",
            "event_source",
            "reference_id",
            "effective_at",
            "metadata",
            "reverses_id",
            "created_by_id",
            "created_at",
            "entries",
        ]
        read_only_fields = fields


class BalanceSerializer(serializers.Serializer):
    code = serializers.CharField()
    kind = serializers.CharField()
    currency = serializers.CharField()
    owner_id = serializers.UUIDField(allow_null=True)
    balance_cents = serializers.IntegerField()


class BalanceListSerializer(serializers.Serializer):
    results = BalanceSerializer(many=True)


class EntriesView(APIView):
    """GET: entries the caller may see (own for hosts and artists, all for admins).
    POST: an admin's manual adjustment (a balanced set of entries with a reason)."""

    pagination_class = Pagination

    @extend_schema(parameters=[EntryFilterSerializer], responses=EntrySerializer(many=True))
    def get(self, request: Request) -> Response:
        query = EntryFilterSerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        f = query.validated_data
        rows = selectors.entries(
            user_id=f.get("userId"),
            currency=f.get("currency"),
            event_source=f.get("event_source"),
            reference_id=f.get("reference_id"),
            account_code=f.get("account"),
            created_from=f.get("from"),
            created_to=f.get("to"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(EntrySerializer(page, many=True).data)

    @extend_schema(
        request=AdjustmentSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        responses={201: TransactionSerializer, 200: TransactionSerializer},
    )
    def post(self, request: Request) -> Response:
        body = AdjustmentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        key = request.headers.get("Idempotency-Key") or data.get("idempotency_key")
        if not key:
            raise serializers.ValidationError(
                {"idempotency_key": ["required (in the body or the Idempotency-Key header)"]}
            )
        posted = services.post_adjustment(
            actor=request.user,
            idempotency_key=key,
            reason=data["reason"],
            reference_id=data.get("reference_id"),
            entries=[
                services.EntryLine(e["account"], e["type"], e["amount_cents"], e["currency"])
                for e in data["entries"]
            ],
        )
        replayed = posted.was_replayed  # type: ignore[attr-defined]
        return Response(
            TransactionSerializer(posted).data,
            status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED,
        )


class BalancesView(APIView):
    """Balances per account the caller may see; admins may ask for one user's."""

    @extend_schema(parameters=[BalanceFilterSerializer], responses=BalanceListSerializer)
    def get(self, request: Request) -> Response:
        query = BalanceFilterSerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        owner_id = query.validated_data.get("userId")
        if owner_id is None and not request.user.is_admin:
            owner_id = request.user.pk
        currency = query.validated_data.get("currency")
        rows = [b for b in selectors.balances(owner_id=owner_id) if currency in (None, b.currency)]
        return Response({"results": BalanceSerializer(rows, many=True).data})

"""Refunds and disputes over HTTP: parse, call one service or selector, shape the answer.

Another user's charge, refund or dispute is a 404, never a 403.
"""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from disputes import selectors, services
from disputes.models import (
    Dispute,
    DisputeNote,
    DisputeStatus,
    Refund,
    RefundReason,
    RefundStatus,
    RefundTransferReversal,
)
from treasury.errors import Forbidden
from treasury.fields import CurrencyField, InputSerializer, MinorUnitsField
from treasury.pagination import Pagination

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="the same key and body return the first refund (200); the same key with"
    " another body is a 409",
)


class RefundRequestSerializer(InputSerializer):
    charge_id = serializers.CharField(max_length=255, help_text="The Stripe charge id (ch_...).")
    amount_cents = MinorUnitsField(
        required=False,
        allow_null=True,
        help_text="minor units (e.g. cents); left out: all that is left of the charge",
    )
    currency = CurrencyField(
        required=False, help_text="Optional; must be the charge's currency when given."
    )
    reason = serializers.ChoiceField(
        choices=RefundReason.choices, default=RefundReason.REQUESTED_BY_CUSTOMER
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")


class TransferReversalSerializer(serializers.ModelSerializer):
    user_id = serializers.UUIDField(read_only=True)
    payout_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = RefundTransferReversal
        fields = [
            "user_id",
            "payout_id",
            "stripe_transfer_id",
            "amount_cents",
            "currency",
            "status",
            "failure_code",
            "created_at",
        ]
        read_only_fields = fields


class RefundSerializer(serializers.ModelSerializer):
    original_charge_id = serializers.CharField(source="charge_id", read_only=True)
    requested_by_id = serializers.UUIDField(read_only=True, allow_null=True)
    ledger_transaction_id = serializers.IntegerField(read_only=True, allow_null=True)
    transfer_reversals = TransferReversalSerializer(many=True, read_only=True, source="reversals")

    class Meta:
        model = Refund
        fields = [
            "id",
            "stripe_refund_id",
            "original_charge_id",
            "status",
            "amount_cents",
            "currency",
            "reason",
            "note",
            "requested_by_id",
            "idempotency_key",
            "ledger_transaction_id",
            "split",
            "failure_reason",
            "recovery_note",
            "transfer_reversals",
            "created_at",
            "settled_at",
        ]
        read_only_fields = fields


class RefundFilterSerializer(InputSerializer):
    status = serializers.ChoiceField(choices=RefundStatus.choices, required=False)
    charge_id = serializers.CharField(
        required=False, max_length=255, help_text="the refunds of one charge"
    )


class RefundsView(APIView):
    """POST: refund (part of) a charge. GET: the caller's refunds (every refund, for an
    admin), newest first."""

    pagination_class = Pagination

    @extend_schema(
        request=RefundRequestSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: RefundSerializer, 200: RefundSerializer},
    )
    def post(self, request: Request) -> Response:
        body = RefundRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        refund = services.request_refund(
            actor=request.user,
            charge_id=data["charge_id"],
            amount_cents=data.get("amount_cents"),
            currency=data.get("currency"),
            reason=data["reason"],
            note=data.get("note", ""),
            idempotency_key=request.headers.get("Idempotency-Key") or f"api:{uuid.uuid4()}",
        )
        replayed = refund.was_replayed  # type: ignore[attr-defined]
        return Response(
            RefundSerializer(refund).data,
            status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED,
        )

    @extend_schema(parameters=[RefundFilterSerializer], responses=RefundSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = RefundFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.refunds_visible_to(
            user=request.user,
            status=query.validated_data.get("status"),
            charge_id=query.validated_data.get("charge_id"),
        ).prefetch_related("reversals")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(RefundSerializer(page, many=True).data)


class RefundDetailView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("refund_id", int, OpenApiParameter.PATH)],
        responses=RefundSerializer,
    )
    def get(self, request: Request, refund_id: str) -> Response:
        refund = selectors.refund_for(user=request.user, refund_id=int(refund_id))
        return Response(RefundSerializer(refund).data)


class DisputeNoteSerializer(serializers.ModelSerializer):
    author_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = DisputeNote
        fields = ["id", "author_id", "body", "created_at"]
        read_only_fields = fields


class DisputeSerializer(serializers.ModelSerializer):
    charge_id = serializers.CharField(read_only=True)
    host_id = serializers.UUIDField(read_only=True)
    notes = DisputeNoteSerializer(many=True, read_only=True)

    class Meta:
        model = Dispute
        fields = [
            "id",
            "stripe_dispute_id",
            "charge_id",
            "host_id",
            "status",
            "amount_cents",
            "currency",
            "reason",
            "evidence_due_by",
            "withdrawn_cents",
            "fee_cents",
            "loss_bearer",
            "fee_bearer",
            "holds",
            "outcome",
            "notes",
            "created_at",
            "closed_at",
        ]
        read_only_fields = fields


class DisputeFilterSerializer(InputSerializer):
    status = serializers.ChoiceField(choices=DisputeStatus.choices, required=False)


class DisputesView(APIView):
    """The disputes of the caller's sales (every dispute, for an admin), newest first."""

    pagination_class = Pagination

    @extend_schema(parameters=[DisputeFilterSerializer], responses=DisputeSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = DisputeFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.disputes_visible_to(
            user=request.user, status=query.validated_data.get("status")
        ).prefetch_related("notes")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DisputeSerializer(page, many=True).data)


class OpenDisputesView(APIView):
    """Disputes not decided yet, the nearest evidence deadline first (admins only)."""

    pagination_class = Pagination

    @extend_schema(responses=DisputeSerializer(many=True))
    def get(self, request: Request) -> Response:
        if not request.user.is_admin:
            raise Forbidden("only admins list open disputes")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.open_disputes(), request, view=self)
        return paginator.get_paginated_response(DisputeSerializer(page, many=True).data)


class CommentSerializer(InputSerializer):
    dispute_id = serializers.CharField(max_length=255, help_text="The Stripe dispute id (dp_...).")
    note = serializers.CharField(max_length=5000)


class CommentView(APIView):
    """Add a resolution note to a dispute (admins, and the host whose sale it is); audited."""

    @extend_schema(request=CommentSerializer, responses={201: DisputeNoteSerializer})
    def post(self, request: Request) -> Response:
        body = CommentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        note = services.add_dispute_note(
            actor=request.user,
            stripe_dispute_id=body.validated_data["dispute_id"],
            body=body.validated_data["note"],
        )
        return Response(DisputeNoteSerializer(note).data, status=status.HTTP_201_CREATED)

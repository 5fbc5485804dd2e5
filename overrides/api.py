"""POST /api/admin/override: the typed override console (see overrides/services.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from disputes.models import RefundReason
from ledger.models import Side
from overrides.services import ACTIONS, perform_override
from treasury.errors import Forbidden
from treasury.fields import CurrencyField, InputSerializer, MinorUnitsField

REASON_MAX_LENGTH = 1000
MAX_ID = 2**63 - 1  # a BIGINT primary key


# --- targets and params, one pair per action ---


class EmptySerializer(InputSerializer):
    pass


class LedgerEntrySerializer(InputSerializer):
    account = serializers.CharField(max_length=200)
    side = serializers.ChoiceField(choices=Side.values)
    amount_cents = MinorUnitsField()
    currency = CurrencyField()


class LedgerAdjustParams(InputSerializer):
    entries = serializers.ListField(child=LedgerEntrySerializer(), min_length=2, max_length=50)
    reference_id = serializers.CharField(max_length=255, required=False, allow_blank=True)


class PayoutTarget(InputSerializer):
    payout_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class SplitRuleTarget(InputSerializer):
    split_rule_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class DisputeTarget(InputSerializer):
    dispute_id = serializers.CharField(max_length=255)


class DisputeNoteParams(InputSerializer):
    body = serializers.CharField(max_length=5000)


class ChargeTarget(InputSerializer):
    charge_id = serializers.CharField(max_length=255)


class RefundParams(InputSerializer):
    amount_cents = MinorUnitsField(required=False, allow_null=True)
    currency = CurrencyField(required=False)
    refund_reason = serializers.ChoiceField(
        choices=RefundReason.values, default=RefundReason.REQUESTED_BY_CUSTOMER
    )


class AnomalyTarget(InputSerializer):
    anomaly_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class WebhookTarget(InputSerializer):
    event_id = serializers.CharField(max_length=255)


# action -> (target serializer, params serializer)
SHAPES: dict[str, tuple[type[serializers.Serializer], type[serializers.Serializer]]] = {
    "ledger.adjust": (EmptySerializer, LedgerAdjustParams),
    "payout.hold": (PayoutTarget, EmptySerializer),
    "payout.release": (PayoutTarget, EmptySerializer),
    "split_rule.archive": (SplitRuleTarget, EmptySerializer),
    "dispute.note": (DisputeTarget, DisputeNoteParams),
    "refund.create": (ChargeTarget, RefundParams),
    "anomaly.resolve": (AnomalyTarget, EmptySerializer),
    "webhook.retry": (WebhookTarget, EmptySerializer),
}
assert set(SHAPES) == set(ACTIONS), "every override action needs a request shape"


class OverrideEnvelope(InputSerializer):
    action = serializers.ChoiceField(choices=sorted(ACTIONS))
    reason = serializers.CharField(max_length=REASON_MAX_LENGTH)
    target = serializers.DictField(required=False, default=dict)
    params = serializers.DictField(required=False, default=dict)


def _request_serializer(action: str) -> type[serializers.Serializer]:
    """The documented body of one action (also what validates it)."""
    target, params = SHAPES[action]
    name = "".join(part.title() for part in action.replace("_", ".").split(".")) + "Override"
    return type(
        name,
        (InputSerializer,),
        {
            "action": serializers.ChoiceField(choices=[action]),
            "reason": serializers.CharField(max_length=REASON_MAX_LENGTH),
            "target": target(required=target is not EmptySerializer),
            "params": params(required=params is not EmptySerializer),
            "__doc__": f"`{action}`: {ACTIONS[action].summary}.",
        },
    )


REQUEST_SERIALIZERS = {action: _request_serializer(action) for action in SHAPES}


class OverrideResponseSerializer(serializers.Serializer):
    action = serializers.CharField()
    audit_id = serializers.IntegerField()
    replayed = serializers.BooleanField()
    result = serializers.DictField()


class OverrideView(APIView):
    """Admins' corrections, one typed action at a time, each audited once with its reason."""

    @extend_schema(
        operation_id="admin_override",
        summary="Perform an audited override",
        description=(
            "One action per call: "
            + ", ".join(f"`{name}` ({a.summary})" for name, a in ACTIONS.items())
            + ". `reason` is required. The response carries the id of the one `audit_logs` row"
            " written (actor, before, after, and the reason under details.override)."
            " 400: unknown action, missing reason, bad target/params; 403: not staff, or the"
            " staff group may not do it; 404: the target does not exist or belongs to a host"
            " outside the actor's scope; 409: the target's state forbids it."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Honoured by ledger.adjust and refund.create: the same key and"
                " body returns the first result (replayed: true); another body is a 409.",
            )
        ],
        request=PolymorphicProxySerializer(
            component_name="Override",
            serializers=REQUEST_SERIALIZERS,
            resource_type_field_name="action",
        ),
        responses={200: OverrideResponseSerializer},
        examples=[
            OpenApiExample(
                "Hold a payout",
                value={"action": "payout.hold", "reason": "KYC check", "target": {"payout_id": 42}},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        if not getattr(request.user, "is_admin", False):
            raise Forbidden("only staff may override")
        envelope = OverrideEnvelope(data=request.data)
        envelope.is_valid(raise_exception=True)
        action: str = envelope.validated_data["action"]
        body = REQUEST_SERIALIZERS[action](data=request.data)
        body.is_valid(raise_exception=True)
        data: dict[str, Any] = body.validated_data
        outcome = perform_override(
            actor=request.user,  # type: ignore[arg-type]
            action=action,
            reason=data["reason"],
            target=data.get("target") or {},
            params=data.get("params") or {},
            idempotency_key=request.headers.get("Idempotency-Key") or None,
        )
        return Response(
            OverrideResponseSerializer(
                {
                    "action": outcome.action,
                    "audit_id": outcome.audit_id,
                    "replayed": outcome.replayed,
                    "result": outcome.result,
                }
            ).data
        )

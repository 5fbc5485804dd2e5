"""Stripe's HTTP surface: the webhook, Express onboarding, charges, demo charges."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from splits.selectors import rule_version
from treasury.errors import Forbidden, NotFound, TreasuryError, error_body
from treasury.fields import CurrencyField, InputSerializer, MinorUnitsField
from treasury.models import User
from treasury.pagination import Pagination
from treasury.rls import system_context
from treasury.stripe import selectors, services
from treasury.stripe.models import StripeAccount, StripeCharge


@method_decorator(csrf_exempt, name="dispatch")
class StripeWebhookView(View):
    """POST /api/stripe/webhook: Stripe's signed events. No JWT, no session, no CSRF token:
    the signature is the authentication.

    400 (nothing stored): a missing or wrong signature, a timestamp older than the
    tolerance, malformed JSON, a body that is not an event. 200 otherwise, also when the
    treasury's handler failed: the event is then stored as `failed` and our own job retries
    it. Answering 5xx would make Stripe resend the same bytes to the same failure, and it
    would roll the failure record back with the request's transaction. A 5xx happens only
    when the event could not be stored at all; Stripe's redelivery is then what we want.
    """

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> JsonResponse:
        try:
            event = services.verified_event(
                payload=request.body, signature=request.headers.get("Stripe-Signature")
            )
        except TreasuryError as exc:
            return JsonResponse(error_body(exc.code, exc.message, exc.fields), status=400)
        with system_context():
            processing = services.receive_webhook(request=request)
        body: dict[str, Any] = {
            "received": True,
            "event_id": event["id"],
            "type": event["type"],
            "status": processing.status,
            "duplicate": getattr(processing, "was_duplicate", False),
        }
        return JsonResponse(body, status=200)


class StripeAccountSerializer(serializers.ModelSerializer):
    user_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = StripeAccount
        fields = [
            "user_id",
            "stripe_account_id",
            "onboarding_status",
            "charges_enabled",
            "payouts_enabled",
            "details_submitted",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OnboardingSerializer(serializers.Serializer):
    url = serializers.URLField(allow_null=True)
    stripe_account_id = serializers.CharField()
    onboarding_status = serializers.CharField()


class OnboardView(APIView):
    """POST /api/stripe/accounts/onboard: a host's or artist's Express account and the link
    to Stripe's onboarding (`url` is null once onboarding is over). 201 when the account
    was created now, 200 after."""

    @extend_schema(request=None, responses={200: OnboardingSerializer, 201: OnboardingSerializer})
    def post(self, request: Request) -> Response:
        link = services.start_onboarding(user=request.user)
        body = {
            "url": link.url,
            "stripe_account_id": link.account.stripe_account_id,
            "onboarding_status": link.account.onboarding_status,
        }
        return Response(body, status=status.HTTP_201_CREATED if link.created else 200)


class MyStripeAccountView(APIView):
    """GET /api/stripe/accounts/me: the caller's connected account, 404 if none."""

    @extend_schema(responses=StripeAccountSerializer)
    def get(self, request: Request) -> Response:
        account = selectors.connected_account_of(user=request.user)
        return Response(StripeAccountSerializer(account).data)


class StripeChargeSerializer(serializers.ModelSerializer):
    buyer_id = serializers.UUIDField(read_only=True, allow_null=True)
    host_id = serializers.UUIDField(read_only=True)
    split_rule_id = serializers.IntegerField(read_only=True, allow_null=True)
    ledger_transaction_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = StripeCharge
        fields = [
            "stripe_charge_id",
            "payment_intent_id",
            "buyer_id",
            "host_id",
            "amount_cents",
            "currency",
            "stripe_fee_cents",
            "stripe_fee_bearer",
            "split_rule_id",
            "split_rule_version",
            "allocation",
            "ledger_transaction_id",
            "charged_at",
            "created_at",
        ]
        read_only_fields = fields


class ChargeListView(generics.ListAPIView):
    """GET /api/stripe/charges: the charges the caller paid or sold (all, for an admin)."""

    serializer_class = StripeChargeSerializer
    pagination_class = Pagination
    queryset = StripeCharge.objects.none()  # for the schema; get_queryset answers requests

    def get_queryset(self) -> QuerySet[StripeCharge]:
        return selectors.charges_visible_to(user=self.request.user)


class ChargeDetailView(APIView):
    """GET /api/stripe/charges/<ch_id>: one charge; someone else's is a 404."""

    @extend_schema(responses=StripeChargeSerializer)
    def get(self, request: Request, stripe_charge_id: str) -> Response:
        charge = selectors.charge_for(user=request.user, stripe_charge_id=stripe_charge_id)
        return Response(StripeChargeSerializer(charge).data)


class DemoChargeSerializer(InputSerializer):
    buyer_id = serializers.UUIDField()
    host_id = serializers.UUIDField()
    amount_cents = MinorUnitsField()
    currency = CurrencyField()
    split_rule_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**63 - 1
    )


class DemoChargeView(APIView):
    """POST /api/stripe/demo-charges (admins): a buyer pays a host through Stripe with a test
    card. The ledger posting follows when Stripe's webhook arrives."""

    @extend_schema(request=DemoChargeSerializer, responses={201: dict})
    def post(self, request: Request) -> Response:
        if not getattr(request.user, "is_admin", False):
            raise Forbidden("only admins create demo charges")
        data = DemoChargeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        users = {
            u.pk: u for u in User.objects.filter(pk__in=[values["buyer_id"], values["host_id"]])
        }
        for field in ("buyer_id", "host_id"):
            if values[field] not in users:
                raise NotFound(f"{field} {values[field]} not found", fields={field: ["not found"]})
        split_rule = None
        if values.get("split_rule_id"):
            split_rule = rule_version(rule_id=values["split_rule_id"])
        result = services.create_demo_charge(
            buyer=users[values["buyer_id"]],
            host=users[values["host_id"]],
            amount_cents=values["amount_cents"],
            currency=values["currency"],
            split_rule=split_rule,
            actor=request.user,
        )
        return Response(result, status=status.HTTP_201_CREATED)

"""Split rules over HTTP: parse, call one service or selector, shape the answer.

Another owner's rule is a 404 (row-level security makes it invisible), never a 403.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from splits import selectors, services
from splits.models import SplitRule
from splits.terms import BPS_WHOLE, MAX_RECIPIENTS, Bearer
from treasury.fields import CurrencyField, InputSerializer, MinorUnitsField
from treasury.pagination import Pagination


class RecipientSerializer(InputSerializer):
    recipient_id = serializers.UUIDField(help_text="An active host's or artist's user id.")
    share_bps = serializers.IntegerField(
        min_value=1, max_value=BPS_WHOLE, help_text="Share in basis points (10000 = 100%)."
    )


class SplitRuleSerializer(serializers.ModelSerializer):
    owner_id = serializers.UUIDField(read_only=True)
    recipients = RecipientSerializer(many=True, source="rules", read_only=True)

    class Meta:
        model = SplitRule
        fields = [
            "id",
            "owner_id",
            "name",
            "recipients",
            "platform_fee_bps",
            "platform_fee_fixed_cents",
            "fixed_fee_currency",
            "stripe_fee_bearer",
            "dispute_loss_bearer",
            "is_default",
            "lineage_id",
            "version",
            "superseded_at",
            "archived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SplitRuleWriteSerializer(InputSerializer):
    """Shares must sum to exactly 10000. The platform's terms (fee, fixed fee, bearers) are
    the platform defaults unless an admin sets them; a host or artist may leave them out."""

    name = serializers.CharField(max_length=200)
    recipients = serializers.ListField(
        child=RecipientSerializer(),
        min_length=1,
        max_length=MAX_RECIPIENTS,
        help_text=f"1 to {MAX_RECIPIENTS} recipients, shares summing to 10000.",
    )
    platform_fee_bps = serializers.IntegerField(min_value=0, max_value=BPS_WHOLE, required=False)
    platform_fee_fixed_cents = MinorUnitsField(min_value=0, required=False)
    fixed_fee_currency = CurrencyField(
        allow_null=True,
        allow_blank=True,
        required=False,
        help_text="The fixed fee applies only to charges in this currency.",
    )
    stripe_fee_bearer = serializers.ChoiceField(choices=Bearer.choices, required=False)
    dispute_loss_bearer = serializers.ChoiceField(choices=Bearer.choices, required=False)
    is_default = serializers.BooleanField(required=False)

    def to_service_kwargs(self) -> dict[str, Any]:
        data = dict(self.validated_data)
        if "recipients" in data:
            data["recipients"] = [dict(r) for r in data["recipients"]]
        return data


class SplitRuleFilterSerializer(InputSerializer):
    is_default = serializers.BooleanField(required=False, allow_null=True, default=None)
    name = serializers.CharField(
        required=False, max_length=200, help_text="Part of the name, any case."
    )
    include_archived = serializers.BooleanField(required=False, default=False)


RULE_ID = OpenApiParameter("rule_id", int, OpenApiParameter.PATH, description="A version's id.")


class SplitRuleListView(generics.ListAPIView):
    serializer_class = SplitRuleSerializer
    pagination_class = Pagination
    filter_backends: list[type] = []  # the selector filters

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return SplitRule.objects.none()
        filters = SplitRuleFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.split_rules_for(user=self.request.user, **filters.validated_data)

    @extend_schema(
        summary="The current version of each of your split rules (all owners' for admins)",
        parameters=[SplitRuleFilterSerializer],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a split rule (hosts, artists, admins)",
        request=SplitRuleWriteSerializer,
        responses={201: SplitRuleSerializer},
    )
    def post(self, request: Request) -> Response:
        services.require_rule_owner(request.user)  # a buyer gets 403 before any validation
        body = SplitRuleWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        kwargs = services.platform_default_values() | body.to_service_kwargs()
        rule = services.create_split_rule(owner=request.user, actor=request.user, **kwargs)
        return Response(SplitRuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class SplitRuleDetailView(APIView):
    @extend_schema(
        summary="One version of a split rule, superseded and archived ones included",
        parameters=[RULE_ID],
        responses=SplitRuleSerializer,
    )
    def get(self, request: Request, rule_id: str) -> Response:
        rule = selectors.get_split_rule(user=request.user, rule_id=int(rule_id))
        return Response(SplitRuleSerializer(rule).data)

    @extend_schema(
        summary="Change a split rule: writes and returns its next version",
        description="Fields left out keep their values. The version changed is marked"
        " superseded and stays readable by id. Sending the current values changes nothing.",
        parameters=[RULE_ID],
        request=SplitRuleWriteSerializer(partial=True),
        responses=SplitRuleSerializer,
    )
    def put(self, request: Request, rule_id: str) -> Response:
        rule = selectors.get_split_rule(user=request.user, rule_id=int(rule_id))
        body = SplitRuleWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        new_version = services.update_split_rule(
            rule=rule, actor=request.user, **body.to_service_kwargs()
        )
        return Response(SplitRuleSerializer(new_version).data)

    @extend_schema(
        summary="Delete (archive) a split rule", parameters=[RULE_ID], responses={204: None}
    )
    def delete(self, request: Request, rule_id: str) -> Response:
        rule = selectors.get_split_rule(user=request.user, rule_id=int(rule_id))
        services.archive_split_rule(rule=rule, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

"""Admin screens: Stripe events and their processing (with an audited retry), connected
accounts and booked charges. Everything here is read-only: Stripe and the webhook own
these rows; what ops staff may do is retry a failed event."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from treasury.errors import TreasuryError
from treasury.stripe import services
from treasury.stripe.models import EventStatus, StripeAccount, StripeCharge, StripeEventProcessing


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StripeEventProcessing)
class StripeEventProcessingAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "event_type",
        "stripe_event_id",
        "stripe_object_id",
        "status",
        "attempts",
        "short_error",
        "note",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["stripe_event_id", "stripe_object_id", "stripe_account_id"]
    readonly_fields = [f.name for f in StripeEventProcessing._meta.fields]
    date_hierarchy = "created_at"
    actions = ["retry"]

    @admin.display(description="last error")
    def short_error(self, obj: StripeEventProcessing) -> str:
        return obj.last_error[:120]

    @admin.action(description="Retry the selected events (failed ones only)")
    def retry(self, request: HttpRequest, queryset: QuerySet[StripeEventProcessing]) -> None:
        retried = processed = 0
        for processing in queryset.filter(status__in=[EventStatus.FAILED, EventStatus.RECEIVED]):
            try:
                result = services.retry_event(processing=processing, actor=request.user)  # type: ignore[arg-type]
            except TreasuryError as exc:
                self.message_user(request, f"{processing}: {exc.message}", messages.ERROR)
                continue
            retried += 1
            processed += result.status == EventStatus.PROCESSED
        level = messages.SUCCESS if processed == retried else messages.WARNING
        self.message_user(request, f"retried {retried} events, {processed} processed", level)


@admin.register(StripeAccount)
class StripeAccountAdmin(ReadOnlyAdmin):
    list_display = [
        "user",
        "stripe_account_id",
        "onboarding_status",
        "charges_enabled",
        "payouts_enabled",
        "details_submitted",
        "disabled_reason",
        "updated_at",
    ]
    list_filter = ["onboarding_status", "charges_enabled", "payouts_enabled"]
    search_fields = ["stripe_account_id", "user__email"]
    readonly_fields = [f.name for f in StripeAccount._meta.fields]
    list_select_related = ["user"]


@admin.register(StripeCharge)
class StripeChargeAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "stripe_charge_id",
        "host",
        "buyer",
        "amount_cents",
        "currency",
        "stripe_fee_cents",
        "split_rule",
        "split_rule_version",
        "ledger_link",
    ]
    list_filter = ["currency", "stripe_fee_bearer"]
    search_fields = ["stripe_charge_id", "payment_intent_id", "host__email", "buyer__email"]
    readonly_fields = [*(f.name for f in StripeCharge._meta.fields), "ledger_link"]
    list_select_related = ["host", "buyer", "split_rule", "ledger_transaction"]
    date_hierarchy = "created_at"

    @admin.display(description="ledger transaction")
    def ledger_link(self, obj: StripeCharge) -> str:
        label = f"#{obj.ledger_transaction_id} {obj.ledger_transaction.idempotency_key}"
        try:
            url = reverse("admin:ledger_ledgertransaction_change", args=[obj.ledger_transaction_id])
        except NoReverseMatch:  # the ledger's admin screens are not registered
            return label
        return format_html('<a href="{}">{}</a>', url, label)

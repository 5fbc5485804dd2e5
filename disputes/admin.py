"""Refunds and disputes in the admin: read-only lists with filters; what ops staff may do
goes through the services, audited: refund a charge (in full from the charges list, or any
amount from the form), add a resolution note to a dispute."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from disputes import selectors, services
from disputes.models import (
    ChargeToRefund,
    Dispute,
    DisputeNote,
    Refund,
    RefundReason,
    RefundTransferReversal,
)
from ledger.money import format_minor
from treasury.errors import TreasuryError


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _is_admin(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_admin", False))


# --- refunds ---


class RefundForm(forms.Form):
    charge_id = forms.CharField(max_length=255, help_text="The Stripe charge id (ch_...).")
    amount_cents = forms.IntegerField(
        min_value=1, required=False, help_text="Minor units; empty: all that is left."
    )
    reason = forms.ChoiceField(choices=RefundReason.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    idempotency_key = forms.CharField(max_length=255)


class TransferReversalInline(ReadOnlyInline):
    model = RefundTransferReversal
    fields = ["user", "payout", "stripe_transfer_id", "amount_cents", "status", "failure_code"]
    readonly_fields = fields


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "charge_id",
        "amount",
        "status",
        "reason",
        "requested_by",
        "stripe_refund_id",
        "has_debt",
    ]
    list_filter = ["status", "reason", "currency", "created_at"]
    search_fields = ["=id", "stripe_refund_id", "charge__stripe_charge_id", "buyer__email"]
    list_select_related = ["requested_by"]
    readonly_fields = [f.name for f in Refund._meta.fields]
    date_hierarchy = "created_at"
    inlines = [TransferReversalInline]
    change_list_template = "admin/disputes/refund/change_list.html"

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, obj: Refund) -> str:
        return format_minor(obj.amount_cents, obj.currency)

    @admin.display(description="debt left", boolean=True)
    def has_debt(self, obj: Refund) -> bool:
        return bool(obj.recovery_note)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.refund_view)
        return [path("new/", view, name="disputes_refund_new"), *super().get_urls()]

    def refund_view(self, request: HttpRequest) -> HttpResponse:
        """Refund (part of) a charge, as an admin: the same service as POST /api/refunds."""
        if not _is_admin(request):
            messages.error(request, "Only admins may refund charges.")
            return HttpResponseRedirect(reverse("admin:disputes_refund_changelist"))
        initial = {
            "charge_id": request.GET.get("charge", ""),
            "idempotency_key": f"admin:{uuid.uuid4()}",
        }
        form = RefundForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                refund = services.request_refund(
                    actor=request.user,  # type: ignore[arg-type]
                    charge_id=data["charge_id"].strip(),
                    amount_cents=data["amount_cents"],
                    reason=data["reason"],
                    note=data["note"],
                    idempotency_key=data["idempotency_key"],
                )
            except TreasuryError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(
                    request,
                    f"Refund {refund.pk} of {format_minor(refund.amount_cents, refund.currency)}"
                    " is on its way to Stripe.",
                )
                return HttpResponseRedirect(
                    reverse("admin:disputes_refund_change", args=[refund.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Refund a charge",
            "form": form,
            "opts": self.model._meta,
            "submit": "Refund",
        }
        return TemplateResponse(request, "admin/disputes/form.html", context)


@admin.register(ChargeToRefund)
class ChargeToRefundAdmin(ReadOnlyAdmin):
    """The booked charges with what is left to refund, and the refund action."""

    list_display = [
        "stripe_charge_id",
        "charged_at",
        "host",
        "buyer",
        "amount",
        "refunded",
        "refund_link",
    ]
    list_filter = ["currency", "charged_at"]
    search_fields = ["stripe_charge_id", "host__email", "buyer__email"]
    list_select_related = ["host", "buyer"]
    date_hierarchy = "charged_at"
    actions = ["refund_in_full"]

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, obj: ChargeToRefund) -> str:
        return format_minor(obj.amount_cents, obj.currency)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChargeToRefund]:
        return selectors.with_refunded_cents(super().get_queryset(request))

    @admin.display(description="refunded", ordering="refunded_cents")
    def refunded(self, obj: ChargeToRefund) -> str:
        return format_minor(obj.refunded_cents, obj.currency)  # type: ignore[attr-defined]

    @admin.display(description="")
    def refund_link(self, obj: ChargeToRefund) -> str:
        url = reverse("admin:disputes_refund_new") + f"?charge={obj.stripe_charge_id}"
        return format_html('<a href="{}">refund…</a>', url)

    @admin.action(description="Refund what is left of the selected charges")
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[ChargeToRefund]) -> None:
        if not _is_admin(request):
            self.message_user(request, "Only admins may refund charges.", messages.ERROR)
            return
        done = 0
        for charge in queryset.order_by("id"):
            try:
                services.request_refund(
                    actor=request.user,  # type: ignore[arg-type]
                    charge_id=charge.stripe_charge_id,
                    amount_cents=None,
                    reason=RefundReason.REQUESTED_BY_CUSTOMER,
                    note="refunded from the admin",
                    idempotency_key=f"admin:{uuid.uuid4()}",
                )
            except TreasuryError as exc:
                self.message_user(
                    request, f"{charge.stripe_charge_id}: {exc.message}", messages.ERROR
                )
                continue
            done += 1
        if done:
            self.message_user(request, f"refunding {done} charge(s)", messages.SUCCESS)


# --- disputes ---


class NoteForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}))


class DisputeNoteInline(ReadOnlyInline):
    model = DisputeNote
    fields = ["created_at", "author", "body"]
    readonly_fields = fields


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = [
        "stripe_dispute_id",
        "created_at",
        "charge_id",
        "host",
        "amount",
        "status",
        "reason",
        "evidence_due_by",
        "loss_bearer",
        "note_link",
    ]
    list_filter = ["status", "currency", "loss_bearer", "fee_bearer", "reason", "created_at"]
    search_fields = ["stripe_dispute_id", "charge__stripe_charge_id", "host__email"]
    list_select_related = ["host"]
    readonly_fields = [f.name for f in Dispute._meta.fields]
    date_hierarchy = "created_at"
    inlines = [DisputeNoteInline]

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, obj: Dispute) -> str:
        return format_minor(obj.amount_cents, obj.currency)

    @admin.display(description="")
    def note_link(self, obj: Dispute) -> str:
        url = reverse("admin:disputes_dispute_note", args=[obj.pk])
        return format_html('<a href="{}">add note…</a>', url)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.note_view)
        return [
            path("<int:dispute_pk>/note/", view, name="disputes_dispute_note"),
            *super().get_urls(),
        ]

    def note_view(self, request: HttpRequest, dispute_pk: int) -> HttpResponse:
        """Add a resolution note (audited by the service)."""
        dispute = Dispute.objects.filter(pk=dispute_pk).first()
        if dispute is None:
            messages.error(request, f"Dispute {dispute_pk} not found.")
            return HttpResponseRedirect(reverse("admin:disputes_dispute_changelist"))
        form = NoteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.add_dispute_note(
                    actor=request.user,  # type: ignore[arg-type]
                    stripe_dispute_id=dispute.stripe_dispute_id,
                    body=form.cleaned_data["note"],
                )
            except TreasuryError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Note added to {dispute.stripe_dispute_id}.")
                return HttpResponseRedirect(
                    reverse("admin:disputes_dispute_change", args=[dispute.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add a note to {dispute.stripe_dispute_id} ({dispute.status})",
            "form": form,
            "opts": self.model._meta,
            "submit": "Add note",
        }
        return TemplateResponse(request, "admin/disputes/form.html", context)


@admin.register(DisputeNote)
class DisputeNoteAdmin(ReadOnlyAdmin):
    """Notes are added through the dispute's page or the override console (audited)."""

    list_display = ["created_at", "dispute", "author"]
    list_filter = ["created_at"]
    search_fields = ["dispute__stripe_dispute_id", "author__email"]


@admin.register(RefundTransferReversal)
class RefundTransferReversalAdmin(ReadOnlyAdmin):
    list_display = ["id", "refund", "user", "amount_cents", "currency", "status", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["=id", "refund__stripe_refund_id", "user__email"]

"""Payouts in the admin: filters, the clearing balance, and the review actions (hold,
approve, reject, retry), each an audited service call. Rows are never edited by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from ledger.money import format_minor
from payouts import selectors, services
from payouts.models import Payout, PayoutStatus
from treasury.errors import TreasuryError
from treasury.models import User


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "initiated_at",
        "user",
        "status",
        "method",
        "source",
        "amount",
        "fee_cents",
        "risk_score",
        "stripe_transfer_id",
        "failure_code",
    ]
    list_filter = ["status", "method", "source", "currency", "initiated_at"]
    search_fields = ["=id", "user__email", "stripe_transfer_id", "stripe_payout_id"]
    list_select_related = ["user"]
    readonly_fields = [f.name for f in Payout._meta.fields]
    date_hierarchy = "initiated_at"
    actions = ["approve", "reject", "hold", "retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, obj: Payout) -> str:
        return format_minor(obj.amount_cents, obj.currency)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        clearing = [
            {
                "currency": line.currency,
                "clearing": format_minor(line.clearing_cents, line.currency),
                "unsettled": format_minor(line.unsettled_cents, line.currency),
                "matches": line.matches,
            }
            for line in selectors.clearing_summary()
        ]
        return super().changelist_view(request, {**(extra_context or {}), "clearing": clearing})

    def get_urls(self) -> list[URLPattern]:
        run_now = self.admin_site.admin_view(require_POST(self.run_nightly_now))
        return [
            path("run-nightly/", run_now, name="payouts_payout_run_nightly"),
            *super().get_urls(),
        ]

    def run_nightly_now(self, request: HttpRequest) -> HttpResponse:
        """The nightly run, started by hand (it runs in the django-q2 worker)."""
        try:
            services.request_nightly_run(actor=request.user)  # type: ignore[arg-type]
        except TreasuryError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(
                request,
                "The nightly payout run was queued; refresh to see its payouts.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:payouts_payout_changelist"))

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Payout],
        verb: str,
        action: Callable[[Payout, User], Payout],
    ) -> None:
        done = 0
        for payout in queryset.order_by("id"):
            try:
                action(payout, request.user)  # type: ignore[arg-type]
            except TreasuryError as exc:
                self.message_user(request, f"payout {payout.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        if done:
            self.message_user(request, f"{verb} {done} payout(s)", messages.SUCCESS)

    @admin.action(description="Approve the selected held payouts (they are sent)")
    def approve(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._each(
            request,
            queryset,
            "approved",
            lambda p, actor: services.approve_payout(payout_id=p.pk, actor=actor),
        )

    @admin.action(description="Reject the selected held payouts (the money is released)")
    def reject(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._each(
            request,
            queryset,
            "rejected",
            lambda p, actor: services.reject_payout(
                payout_id=p.pk, actor=actor, reason=f"rejected on review by {actor.email}"
            ),
        )

    @admin.action(description="Hold the selected pending payouts for review")
    def hold(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._each(
            request,
            queryset,
            "held",
            lambda p, actor: services.hold_payout(payout_id=p.pk, actor=actor),
        )

    @admin.action(description="Retry: resume unfinished payouts, re-initiate failed ones")
    def retry(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._each(
            request,
            queryset.exclude(status__in=[PayoutStatus.PAID, PayoutStatus.CANCELLED]),
            "retried",
            lambda p, actor: services.retry_payout(payout_id=p.pk, actor=actor),
        )

"""Analytics in the admin: the daily aggregates and verify_ledger runs, read-only (the
charts are on the admin's index page, treasury/admin_site.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from analytics.models import DailyAggregate


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DailyAggregate)
class DailyAggregateAdmin(ReadOnlyAdmin):
    list_display = [
        "day",
        "currency",
        "user",
        "gross_volume_cents",
        "platform_fee_cents",
        "refunds_cents",
        "disputes_cents",
        "payouts_cents",
        "charge_count",
        "computed_at",
    ]
    list_filter = ["currency", ("user", admin.EmptyFieldListFilter)]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    date_hierarchy = "day"

"""The outbox in the admin: events are read-only; a failed delivery can be retried now."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from events import services
from events.models import DeliveryStatus, Event, EventDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = EventDelivery
    fields = ["handler", "status", "attempts", "next_attempt_at", "delivered_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "type", "subject", "dispatched_at"]
    list_filter = ["type"]
    search_fields = ["subject"]
    readonly_fields = ["id", "type", "subject", "payload", "created_at", "dispatched_at"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "event",
        "handler",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "short_error",
    ]
    list_filter = ["status", "handler"]
    search_fields = ["event__subject", "handler"]
    list_select_related = ["event"]
    readonly_fields = [f.name for f in EventDelivery._meta.fields]
    actions = ["retry_now"]

    @admin.display(description="last error")
    def short_error(self, obj: EventDelivery) -> str:
        return obj.last_error.strip().splitlines()[-1][:160] if obj.last_error else ""

    @admin.action(description="Retry the selected deliveries now (failed or dead ones)")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[EventDelivery]) -> None:
        ids = list(
            queryset.filter(status__in=[DeliveryStatus.FAILED, DeliveryStatus.DEAD]).values_list(
                "pk", flat=True
            )
        )
        count = services.retry_deliveries(actor=request.user, delivery_ids=ids)  # type: ignore[arg-type]
        self.message_user(
            request,
            f"{count} deliveries are due again (the next job run delivers them)",
            messages.SUCCESS,
        )

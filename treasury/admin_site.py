"""The admin site: every add, change and delete made through it writes `audit_logs`.

Every ModelAdmin registered on this site (ours and third-party apps') is wrapped with
AuditedAdminMixin, so no screen can forget to audit.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from treasury.services import record_audit, snapshot


class AuditedAdminMixin:
    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        before = None
        if change and obj.pk is not None:
            before = snapshot(type(obj)._default_manager.filter(pk=obj.pk).first())
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        record_audit(
            actor=request.user,  # type: ignore[arg-type]
            action=f"admin.{'change' if change else 'add'}",
            target=obj,
            before=before,
            after=snapshot(obj),
        )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        before = snapshot(obj)
        pk = obj.pk
        super().delete_model(request, obj)  # type: ignore[misc]
        obj.pk = pk
        record_audit(actor=request.user, action="admin.delete", target=obj, before=before)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class TreasuryAdminSite(admin.AdminSite):
    site_header = "Treasury back office"
    site_title = "Treasury"
    index_title = "Money, accounts and audit"
    # The index shows the analytics dashboard (charts and ops counters) above the app list.
    index_template = "admin/treasury/index.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        from analytics.dashboard import dashboard_context

        extra_context = {**(extra_context or {}), "dashboard": dashboard_context(user=request.user)}
        return super().index(request, extra_context)

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        from overrides.permissions import HostScopedAdminMixin

        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditedAdminMixin):
            admin_class = type(
                f"Audited{admin_class.__name__}", (AuditedAdminMixin, admin_class), {}
            )
        # Support agents limited to some hosts see only those hosts' objects.
        if not issubclass(admin_class, HostScopedAdminMixin):
            admin_class = type(admin_class.__name__, (HostScopedAdminMixin, admin_class), {})
        super().register(model_or_iterable, admin_class, **options)

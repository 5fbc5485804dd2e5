"""Split rules in the back office: look, search, see a rule's history, archive.

Read-only screens: a rule's terms are frozen per version (PostgreSQL refuses edits) and a
change must go through `update_split_rule` to become a new version, so the admin neither
adds nor edits rows. Archiving is an action that calls the audited service.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from splits import selectors, services
from splits.models import SplitRule
from treasury.errors import TreasuryError


class ArchivedFilter(admin.SimpleListFilter):
    title = "archived"
    parameter_name = "archived"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Active"), ("yes", "Archived")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SplitRule]) -> QuerySet[SplitRule]:
        if self.value() == "no":
            return queryset.filter(archived_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(archived_at__isnull=False)
        return queryset


class CurrentVersionFilter(admin.SimpleListFilter):
    title = "version"
    parameter_name = "current"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Current"), ("no", "Superseded")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SplitRule]) -> QuerySet[SplitRule]:
        if self.value() == "yes":
            return queryset.filter(superseded_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(superseded_at__isnull=False)
        return queryset


@admin.register(SplitRule)
class SplitRuleAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "owner",
        "version",
        "is_default",
        "platform_fee_bps",
        "platform_fee_fixed_cents",
        "fixed_fee_currency",
        "stripe_fee_bearer",
        "dispute_loss_bearer",
        "superseded_at",
        "archived_at",
        "created_at",
    ]
    list_filter = [
        "owner__role",
        "is_default",
        ArchivedFilter,
        CurrentVersionFilter,
        "stripe_fee_bearer",
        "dispute_loss_bearer",
    ]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    actions = ["archive_rules"]
    fields = [
        "id",
        "owner",
        "name",
        "rules",
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
        "version_history",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # PostgreSQL refuses it too: archive instead

    @admin.display(description="versions")
    def version_history(self, rule: SplitRule) -> SafeString:
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">v{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:splits_splitrule_change", args=[version.pk]),
                    version.version,
                    version.name,
                    version.created_at,
                    version.superseded_at or "current",
                    version.archived_at or "",
                )
                for version in selectors.rule_versions(rule=rule)
            ),
        )
        return format_html(
            "<table><tr><th>version</th><th>name</th><th>created</th><th>superseded</th>"
            "<th>archived</th></tr>{}</table>",
            rows,
        )

    @admin.action(description="Archive the selected split rules")
    def archive_rules(self, request: HttpRequest, queryset: QuerySet[SplitRule]) -> None:
        archived = 0
        for rule in queryset:
            try:
                services.archive_split_rule(rule=rule, actor=request.user)  # type: ignore[arg-type]
            except TreasuryError as exc:
                self.message_user(request, f"{rule}: {exc.message}", messages.ERROR)
            else:
                archived += 1
        self.message_user(request, f"Archived {archived} split rule(s).", messages.SUCCESS)

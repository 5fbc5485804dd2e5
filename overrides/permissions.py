"""Staff groups and what each may do; which hosts a staff user may see.

Three groups, made idempotently after every `migrate` and by `manage.py ensure_staff_groups`:
- `ops`: every override, every host, view and change in the admin.
- `support`: read-only in the admin plus dispute notes, and only for the hosts they were
  assigned (django-guardian: `treasury.view_user` on the host's user row).
- `finance`: reports and payouts (hold, release), every host, read-only elsewhere.

Staff users carry the `admin` role (the RLS context that sees every row); the groups narrow
what they may do here, and host scoping narrows what they see in the admin and may target
through the override console.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.models import Group, Permission
from django.db.models import Q, QuerySet
from django.http import HttpRequest

# The apps whose models staff look at in the admin (others' apps are added when installed).
STAFF_APPS = (
    "treasury",
    "ledger",
    "splits",
    "payouts",
    "disputes",
    "reporting",
    "anomalies",
    "events",
    "analytics",
    "monitoring",
)
OVERRIDE_PERMISSIONS = (
    "adjust_ledger",
    "hold_payout",
    "release_payout",
    "archive_split_rule",
    "add_dispute_note",
    "create_refund",
    "resolve_anomaly",
    "retry_webhook",
)
ALL_HOSTS = "all_hosts"
HOST_OBJECT_PERMISSION = "treasury.view_user"


def _group_permissions(name: str) -> Q:
    view = Q(content_type__app_label__in=STAFF_APPS, codename__startswith="view_")
    change = Q(content_type__app_label__in=STAFF_APPS, codename__startswith="change_")
    mine = Q(content_type__app_label="overrides")
    if name == "ops":
        return view | change | mine
    if name == "support":
        return view | (mine & Q(codename="add_dispute_note"))
    if name == "finance":
        reports = Q(content_type__app_label="reporting") & ~Q(codename__startswith="delete_")
        payouts = Q(content_type__app_label="payouts", codename__startswith="change_")
        return (
            view
            | reports
            | payouts
            | (mine & Q(codename__in=["hold_payout", "release_payout", ALL_HOSTS]))
        )
    raise ValueError(f"unknown staff group {name!r}")


STAFF_GROUPS = ("ops", "support", "finance")


def ensure_staff_groups(*, using: str = "default") -> dict[str, int]:
    """Create or update the staff groups; returns {group: number of permissions}. Idempotent:
    a group's permissions are set to exactly its definition (new models' perms included)."""
    counts: dict[str, int] = {}
    for name in STAFF_GROUPS:
        group, _ = Group.objects.using(using).get_or_create(name=name)
        permissions = list(Permission.objects.using(using).filter(_group_permissions(name)))
        group.permissions.set(permissions)
        counts[name] = len(permissions)
    return counts


# --- host scoping (django-guardian) ---


def host_scope(user: Any) -> set[UUID] | None:
    """The hosts `user` may see, or None for every host (superusers, `all_hosts`)."""
    from guardian.shortcuts import get_objects_for_user

    from treasury.models import User

    if user.is_superuser or user.has_perm(f"overrides.{ALL_HOSTS}"):
        return None
    hosts = get_objects_for_user(
        user,
        HOST_OBJECT_PERMISSION,
        klass=User,
        with_superuser=False,
        accept_global_perms=False,
    )
    return set(hosts.values_list("pk", flat=True))


def may_see_hosts(user: Any, host_ids: set[Any]) -> bool:
    """True when every host in `host_ids` is within `user`'s scope (unscoped: always)."""
    scope = host_scope(user)
    return scope is None or {UUID(str(h)) for h in host_ids if h} <= scope


# Model label -> the lookup that names the host (or recipient) an object belongs to.
HOST_LOOKUPS: dict[str, str] = {
    "payouts.payout": "user_id",
    "disputes.refund": "host_id",
    "disputes.dispute": "host_id",
    "disputes.disputenote": "dispute__host_id",
    "disputes.refundtransferreversal": "user_id",
    "disputes.chargetorefund": "host_id",
    "treasury.stripecharge": "host_id",
    "treasury.stripeaccount": "user_id",
    "splits.splitrule": "owner_id",
    "anomalies.anomaly": "user_id",
    "reporting.vatinvoice": "host_id",
    "ledger.ledgeraccount": "owner_id",
    "ledger.ledgerentry": "user_id",
    "treasury.user": "id",
}


class HostScopedAdminMixin:
    """Admin screens show a host-scoped staff user only their assigned hosts' objects (lists,
    change pages and actions alike, since they all start from get_queryset)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        lookup = HOST_LOOKUPS.get(queryset.model._meta.label_lower)
        if lookup is None or not request.user.is_authenticated:
            return queryset
        scope = host_scope(request.user)
        if scope is None:
            return queryset
        return queryset.filter(**{f"{lookup}__in": scope})

"""Every read of split rules.

Row-level security decides what the caller's context can see (an owner their own rules, the
admin and system contexts all); the explicit filters below say the same in Python, so a
selector called under a wider context still answers the question it was asked.
"""

from __future__ import annotations

from django.db.models import QuerySet

from splits.models import SplitRule
from splits.services import platform_default_terms
from splits.terms import RuleTerms
from treasury.errors import NotFound
from treasury.models import User

MAX_BIGINT = 2**63 - 1


def split_rules_for(
    *,
    user: User,
    is_default: bool | None = None,
    name: str | None = None,
    include_archived: bool = False,
) -> QuerySet[SplitRule]:
    """The current version of each of `user`'s rules (every owner's, for an admin), newest
    first; `name` matches a part of the name, case-insensitively."""
    rules = SplitRule.objects.filter(superseded_at__isnull=True)
    if not user.is_admin:
        rules = rules.filter(owner_id=user.pk)
    if not include_archived:
        rules = rules.filter(archived_at__isnull=True)
    if is_default is not None:
        rules = rules.filter(is_default=is_default)
    if name:
        rules = rules.filter(name__icontains=name)
    return rules.order_by("-created_at", "-id")


def get_split_rule(*, user: User, rule_id: int) -> SplitRule:
    """Any version of a rule the user may see, superseded and archived ones included (a
    charge's receipt links to the version that split it). Someone else's rule is NotFound."""
    rules = SplitRule.objects.filter(pk=rule_id)
    if not user.is_admin:
        rules = rules.filter(owner_id=user.pk)
    return _one(rules, rule_id)


def rule_version(*, rule_id: int) -> SplitRule:
    """Exactly version `rule_id`, whatever its state, for charge, refund and dispute
    processing. It reads in the caller's context: those run under `system_context()`."""
    return _one(SplitRule.objects.filter(pk=rule_id), rule_id)


def rule_versions(*, rule: SplitRule) -> QuerySet[SplitRule]:
    """Every version of `rule`'s lineage, oldest first."""
    return SplitRule.objects.filter(lineage_id=rule.lineage_id).order_by("version")


def default_rule_for(*, owner: User) -> RuleTerms:
    """The terms a charge of `owner`'s is split by when it names no rule: the owner's
    current default rule, else the settings' rule (platform default fee, the rest 100% to
    the owner). `split_rule_id` on the result tells which (None: the settings' rule)."""
    rule = (
        SplitRule.objects.filter(
            owner_id=owner.pk, is_default=True, superseded_at__isnull=True, archived_at__isnull=True
        )
        .order_by("-id")
        .first()
    )
    return rule.terms if rule is not None else platform_default_terms(owner=owner)


def _one(rules: QuerySet[SplitRule], rule_id: int) -> SplitRule:
    # An id past BIGINT would make PostgreSQL raise instead of finding nothing.
    rule = rules.first() if 0 < rule_id <= MAX_BIGINT else None
    if rule is None:
        raise NotFound(f"split rule {rule_id} not found")
    return rule

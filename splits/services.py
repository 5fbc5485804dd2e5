"""Every write to split rules: create, update (a new version), archive.

Rules are versioned, never edited: charges keep pointing at the version that split them.
Each function is one transaction that also writes its audit rows.

Who may set the platform's terms (fee, fixed fee, who bears the Stripe fee and dispute
losses): the platform, i.e. code running under the admin or system RLS context. A host or
artist acting for themselves may create rules only on the platform's default terms
(settings `SPLITS_DEFAULT_*`) and may keep, but not change, the terms an admin gave their
rule; what they decide is who gets the rest and in which shares. Without this, any host
could set the platform's fee on their own sales to 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ledger.money import normalize_currency
from splits.models import SplitRule
from splits.terms import BPS_WHOLE, Bearer, RecipientTerm, RuleTerms
from treasury.errors import Conflict, Forbidden, InvalidInput, NotFound
from treasury.models import RECIPIENT_ROLES, Role, User
from treasury.rls import ContextRole, current_rls_context, system_context
from treasury.services import record_audit, snapshot

OWNER_ROLES = (Role.HOST, Role.ARTIST, Role.ADMIN)
PLATFORM_TERM_FIELDS = (
    "platform_fee_bps",
    "platform_fee_fixed_cents",
    "fixed_fee_currency",
    "stripe_fee_bearer",
    "dispute_loss_bearer",
)
CHANGEABLE_FIELDS = frozenset({"name", "recipients", "is_default", *PLATFORM_TERM_FIELDS})
NAME_MAX_LENGTH = SplitRule._meta.get_field("name").max_length or 200


def require_rule_owner(user: User) -> None:
    """Split rules belong to hosts, artists and admins; anyone else is refused (403)."""
    if not user.is_active or user.role not in OWNER_ROLES:
        raise Forbidden(
            "only hosts, artists and admins can have split rules",
            fields={"owner": [f"role {user.role} cannot own split rules"]},
        )


def platform_default_values() -> dict[str, Any]:
    """The platform's default terms (settings `SPLITS_DEFAULT_*`), as keyword arguments of
    `create_split_rule`; `splits.checks` refuses to start when they are not valid."""
    fixed_cents = settings.SPLITS_DEFAULT_PLATFORM_FEE_FIXED_CENTS
    currency = settings.SPLITS_DEFAULT_FIXED_FEE_CURRENCY or None
    return {
        "platform_fee_bps": settings.SPLITS_DEFAULT_PLATFORM_FEE_BPS,
        "platform_fee_fixed_cents": fixed_cents,
        "fixed_fee_currency": normalize_currency(currency) if fixed_cents and currency else None,
        "stripe_fee_bearer": settings.SPLITS_DEFAULT_STRIPE_FEE_BEARER,
        "dispute_loss_bearer": settings.SPLITS_DEFAULT_DISPUTE_LOSS_BEARER,
    }


def platform_default_terms(*, owner: User) -> RuleTerms:
    """The settings' rule: the platform's default terms, 100% of the rest to `owner`."""
    return RuleTerms.build(
        recipients=[RecipientTerm(recipient_id=owner.pk, share_bps=BPS_WHOLE)],
        **platform_default_values(),
    )


@transaction.atomic
def create_split_rule(
    *,
    owner: User,
    name: str,
    recipients: Sequence[Mapping[str, Any]],
    platform_fee_bps: int,
    platform_fee_fixed_cents: int = 0,
    fixed_fee_currency: str | None = None,
    stripe_fee_bearer: str,
    dispute_loss_bearer: str,
    is_default: bool = False,
    actor: User | None = None,
) -> SplitRule:
    """A new rule (version 1 of a new lineage). `actor` defaults to the owner.

    Making it the default takes the flag off the owner's previous default (in place: the
    flag is not a term of the split, so charges split by that rule are unaffected).
    """
    actor = actor or owner
    require_rule_owner(owner)
    name = _clean_name(name)
    terms = RuleTerms.build(
        recipients=recipients,
        platform_fee_bps=platform_fee_bps,
        platform_fee_fixed_cents=platform_fee_fixed_cents,
        fixed_fee_currency=fixed_fee_currency,
        stripe_fee_bearer=stripe_fee_bearer,
        dispute_loss_bearer=dispute_loss_bearer,
    )
    _check_recipients(terms)
    if not _acting_as_platform():
        _refuse_platform_term_changes(terms, platform_default_values())
    _lock_owner_rules(owner.pk)
    if is_default:
        _clear_default(owner_id=owner.pk, actor=actor)
    rule = _insert(owner_id=owner.pk, name=name, terms=terms, is_default=bool(is_default))
    record_audit(actor=actor, action="split_rule.create", target=rule, after=snapshot(rule))
    return rule


@transaction.atomic
def update_split_rule(*, rule: SplitRule, actor: User, **changes: Any) -> SplitRule:
    """Change a rule by writing its next version; the current one is marked superseded.

    Changes not given keep their current values. Nothing to change returns the current
    version as it is (an idempotent PUT). `rule` must be the current version: updating an
    older one would silently drop what the newer one changed (409).
    """
    unknown = sorted(set(changes) - CHANGEABLE_FIELDS)
    if unknown:
        raise InvalidInput(
            f"cannot change {', '.join(unknown)}",
            fields={field: ["unknown or read-only field"] for field in unknown},
        )
    _lock_owner_rules(rule.owner_id)
    current = _locked_visible(actor=actor, pk=rule.pk)
    if current.is_archived:
        raise Conflict(f"split rule {current.pk} is archived and cannot change")
    if not current.is_current:
        newest = SplitRule.objects.filter(lineage_id=current.lineage_id, superseded_at=None).first()
        raise Conflict(
            f"split rule {current.pk} is version {current.version}, superseded by"
            f" {newest.pk if newest else 'a newer version'}: update the current version",
            fields={"id": [f"current version is {newest.pk if newest else 'unknown'}"]},
        )
    values = _values(current) | changes
    name = _clean_name(values["name"])
    terms = RuleTerms.build(
        recipients=values["recipients"], **{f: values[f] for f in PLATFORM_TERM_FIELDS}
    )
    is_default = bool(values["is_default"])
    unchanged_terms = replace(current.terms, split_rule_id=None)
    if (name, is_default, terms) == (current.name, current.is_default, unchanged_terms):
        return current  # before the checks below: a repeated PUT never fails on its repeat
    _check_recipients(terms)
    if not _acting_as_platform():
        _refuse_platform_term_changes(terms, _values(current))
    before = snapshot(current)
    current.superseded_at = timezone.now()
    current.save(update_fields=["superseded_at", "updated_at"])
    if is_default:
        _clear_default(owner_id=current.owner_id, actor=actor)
    new_version = _insert(
        owner_id=current.owner_id,
        name=name,
        terms=terms,
        is_default=is_default,
        lineage_id=current.lineage_id,
        version=current.version + 1,
    )
    record_audit(
        actor=actor,
        action="split_rule.update",
        target=new_version,
        before=before,
        after=snapshot(new_version),
        details={"previous_version_id": current.pk, "lineage_id": str(current.lineage_id)},
    )
    return new_version


@transaction.atomic
def archive_split_rule(*, rule: SplitRule, actor: User) -> SplitRule:
    """Delete a rule the way money records are deleted: archive its current version.

    Any version of the rule may be passed (the whole lineage is archived); archiving an
    archived rule changes nothing. The rows stay, so charges split by it can be unwound.
    """
    _lock_owner_rules(rule.owner_id)
    visible = _locked_visible(actor=actor, pk=rule.pk)  # 404 unless the actor may see it
    current = SplitRule.objects.select_for_update().get(
        lineage_id=visible.lineage_id, superseded_at=None
    )
    if current.is_archived:
        return current
    before = snapshot(current)
    current.archived_at = timezone.now()
    current.save(update_fields=["archived_at", "updated_at"])
    record_audit(
        actor=actor,
        action="split_rule.archive",
        target=current,
        before=before,
        after=snapshot(current),
    )
    return current


# --- helpers ---


def _acting_as_platform() -> bool:
    """True under the admin or system RLS context: the same fact that lets a query see
    every owner's rows decides who may set the platform's terms."""
    _, role = current_rls_context()
    return role in (ContextRole.ADMIN, ContextRole.SYSTEM)


def _refuse_platform_term_changes(terms: RuleTerms, allowed: Mapping[str, Any]) -> None:
    changed = [f for f in PLATFORM_TERM_FIELDS if _term_value(terms, f) != allowed[f]]
    if changed:
        raise Forbidden(
            "only an admin can set the platform's terms of a split rule:"
            f" leave {', '.join(changed)} as they are",
            fields={field: ["set by the platform"] for field in changed},
        )


def _term_value(terms: RuleTerms, field: str) -> Any:
    value = getattr(terms, field)
    return str(value) if isinstance(value, Bearer) else value


def _values(rule: SplitRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "recipients": rule.rules,
        "is_default": rule.is_default,
        **{field: getattr(rule, field) for field in PLATFORM_TERM_FIELDS},
    }


def _clean_name(name: object) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned or len(cleaned) > NAME_MAX_LENGTH:
        raise InvalidInput(
            f"name must be 1 to {NAME_MAX_LENGTH} characters",
            fields={"name": [f"1 to {NAME_MAX_LENGTH} characters"]},
        )
    return cleaned


def _check_recipients(terms: RuleTerms) -> None:
    """Every recipient is an active host or artist.

    Read as the system: a host's own context cannot see other users' rows. The message is
    the same for an unknown id, a closed account and a buyer, so the API does not tell a
    caller which users exist or what they are.
    """
    ids = [r.recipient_id for r in terms.recipients]
    with system_context():
        eligible = set(
            User.objects.filter(pk__in=ids, is_active=True, role__in=RECIPIENT_ROLES).values_list(
                "pk", flat=True
            )
        )
    errors = {
        f"recipients.{index}.recipient_id": [
            f"recipient {recipient_id} is not an active host or artist"
        ]
        for index, recipient_id in enumerate(ids)
        if recipient_id not in eligible
    }
    if errors:
        raise InvalidInput(next(iter(errors.values()))[0], fields=errors)


def _lock_owner_rules(owner_id: UUID) -> None:
    """Serialise the writes to one owner's rules (whose default is what, which version is
    current): a transaction-scoped advisory lock, released at commit or rollback. Taken
    before any rule row is read, so the order is always owner first, then rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"split_rules:{owner_id}"]
        )


def _locked_visible(*, actor: User, pk: int) -> SplitRule:
    """The row `pk`, locked, if `actor` may change it: their own, or anyone's for the
    platform. RLS already hides other owners' rows; the explicit filter says so in Python
    too. Invisible and nonexistent look the same: 404, never 403."""
    rules = SplitRule.objects.select_for_update().filter(pk=pk)
    if not _acting_as_platform() and not actor.is_admin:
        rules = rules.filter(owner_id=actor.pk)
    rule = rules.first()
    if rule is None:
        raise NotFound(f"split rule {pk} not found")
    return rule


def _clear_default(*, owner_id: UUID, actor: User) -> None:
    """Take the default flag off the owner's current default, if any (audited)."""
    for previous in SplitRule.objects.select_for_update().filter(
        owner_id=owner_id, is_default=True, superseded_at=None, archived_at=None
    ):
        before = snapshot(previous)
        previous.is_default = False
        previous.save(update_fields=["is_default", "updated_at"])
        record_audit(
            actor=actor,
            action="split_rule.default_cleared",
            target=previous,
            before=before,
            after=snapshot(previous),
        )


def _insert(
    *,
    owner_id: UUID,
    name: str,
    terms: RuleTerms,
    is_default: bool,
    lineage_id: UUID | None = None,
    version: int = 1,
) -> SplitRule:
    fields: dict[str, Any] = {
        "owner_id": owner_id,
        "name": name,
        "rules": terms.recipients_json(),
        "is_default": is_default,
        "version": version,
        **{field: _term_value(terms, field) for field in PLATFORM_TERM_FIELDS},
    }
    if lineage_id is not None:
        fields["lineage_id"] = lineage_id
    try:
        with transaction.atomic():
            return SplitRule.objects.create(**fields)
    except IntegrityError as exc:
        # The owner lock makes this unreachable for writes through these services; a write
        # from elsewhere (a shell) that raced us is still refused by the unique indexes.
        raise Conflict("split rule changed concurrently; retry") from exc

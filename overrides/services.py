"""The override console: one typed entry point for every correction ops staff make.

`perform_override` checks who may do what (role admin, the action's staff permission, the
target's host within the actor's scope), then hands over to the service that owns the
change. That service writes the one `audit_logs` row (actor, before, after); the console
tags it with the action and the operator's reason (`treasury.services.audit_scope`) and
returns its id. The console never writes to another app's tables itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from overrides.permissions import may_see_hosts
from treasury.errors import Conflict, Forbidden, InvalidInput, NotFound
from treasury.models import AuditLog, User
from treasury.rls import system_context
from treasury.services import audit_scope


@dataclass(frozen=True)
class OverrideResult:
    action: str
    audit_id: int
    replayed: bool
    result: dict[str, Any]


@dataclass(frozen=True)
class Performed:
    """What an action's runner hands back: the changed object's summary, and (on an
    idempotent replay, when the service wrote nothing) where the first audit row is."""

    result: dict[str, Any]
    replayed: bool = False
    audit_action: str = ""
    target_type: str = ""
    target_id: str = ""


Runner = Callable[..., Performed]


@dataclass(frozen=True)
class Action:
    name: str
    permission: str  # codename in the `overrides` app
    run: Runner
    summary: str


def _key(idempotency_key: str | None) -> str:
    return idempotency_key or uuid.uuid4().hex


def _not_found(what: str, field: str) -> NotFound:
    return NotFound(f"{what} not found", fields={f"target.{field}": ["not found"]})


def _within_scope(actor: User, host_ids: set[Any], what: str, field: str) -> None:
    """Another host's object, for a scoped staff user, does not exist (404, never 403)."""
    if not may_see_hosts(actor, host_ids):
        raise _not_found(what, field)


def _target(
    actor: User, model: Any, *, what: str, field: str, owner: str | None, **lookup: Any
) -> Any:
    """The override's target row, read as the system: a 404 naming `target.<field>` when it
    does not exist, or when its `owner` (a host or user id) is outside a scoped actor's hosts."""
    with system_context():
        row = model.objects.filter(**lookup).first()
    if row is None:
        raise _not_found(what, field)
    if owner is not None:
        _within_scope(actor, {getattr(row, owner)}, what, field)
    return row


# --- the actions: each resolves its target, checks scope, calls the owning service ---


def _ledger_adjust(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from ledger.chart import parse_code
    from ledger.services import EntryLine, post_adjustment

    lines = [
        EntryLine(e["account"], e["side"], e["amount_cents"], e["currency"])
        for e in params["entries"]
    ]
    parsed = [parse_code(line.account) for line in lines]
    _within_scope(actor, {p.owner_id for p in parsed if p and p.owner_id}, "account", "entries")
    posted = post_adjustment(
        actor=actor,
        idempotency_key=f"override:{key}",
        reason=reason,
        entries=lines,
        reference_id=params.get("reference_id") or None,
    )
    return Performed(
        result={"transaction_id": posted.pk, "idempotency_key": posted.idempotency_key},
        replayed=bool(getattr(posted, "was_replayed", False)),
        audit_action="ledger.adjustment",
        target_type=posted._meta.label_lower,
        target_id=str(posted.pk),
    )


def _payout(actor: User, payout_id: int) -> Any:
    from payouts.models import Payout

    return _target(
        actor, Payout, what=f"payout {payout_id}", field="payout_id", owner="user_id", pk=payout_id
    )


def _payout_result(payout: Any) -> dict[str, Any]:
    return {
        "payout_id": payout.pk,
        "status": payout.status,
        "amount_cents": payout.amount_cents,
        "currency": payout.currency,
    }


def _payout_hold(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from payouts.services import hold_payout

    payout = _payout(actor, target["payout_id"])
    return Performed(
        result=_payout_result(hold_payout(payout_id=payout.pk, actor=actor, note=reason))
    )


def _payout_release(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from payouts.services import approve_payout

    payout = _payout(actor, target["payout_id"])
    released = approve_payout(payout_id=payout.pk, actor=actor, note=reason)
    return Performed(result=_payout_result(released))


def _split_rule_archive(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from splits.models import SplitRule
    from splits.services import archive_split_rule

    rule_id = target["split_rule_id"]
    what = f"split rule {rule_id}"
    rule = _target(actor, SplitRule, what=what, field="split_rule_id", owner="owner_id", pk=rule_id)
    if rule.is_archived:
        raise Conflict(
            f"split rule {rule_id} is already archived",
            fields={"target.split_rule_id": ["archived"]},
        )
    with system_context():
        archived = archive_split_rule(rule=rule, actor=actor)
    return Performed(
        result={
            "split_rule_id": archived.pk,
            "lineage_id": str(archived.lineage_id),
            "archived_at": archived.archived_at,
        }
    )


def _dispute_note(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from disputes.models import Dispute
    from disputes.services import add_dispute_note

    dispute_id = target["dispute_id"]
    _target(
        actor,
        Dispute,
        what=f"dispute {dispute_id}",
        field="dispute_id",
        owner="host_id",
        stripe_dispute_id=dispute_id,
    )
    note = add_dispute_note(actor=actor, stripe_dispute_id=dispute_id, body=params["body"])
    return Performed(result={"dispute_id": dispute_id, "note_id": note.pk})


def _refund_create(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from disputes.services import request_refund
    from treasury.stripe.models import StripeCharge

    charge_id = target["charge_id"]
    _target(
        actor,
        StripeCharge,
        what=f"charge {charge_id}",
        field="charge_id",
        owner="host_id",
        stripe_charge_id=charge_id,
    )
    refund = request_refund(
        actor=actor,
        charge_id=charge_id,
        amount_cents=params.get("amount_cents"),
        currency=params.get("currency"),
        reason=params["refund_reason"],
        note=reason,
        idempotency_key=f"override:{key}",
    )
    return Performed(
        result={
            "refund_id": refund.pk,
            "status": refund.status,
            "amount_cents": refund.amount_cents,
            "currency": refund.currency,
        },
        replayed=bool(getattr(refund, "was_replayed", False)),
        audit_action="refund.request",
        target_type=refund._meta.label_lower,
        target_id=str(refund.pk),
    )


def _anomaly_resolve(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from anomalies.models import Anomaly
    from anomalies.services import resolve_anomaly

    anomaly_id = target["anomaly_id"]
    what = f"anomaly {anomaly_id}"
    _target(actor, Anomaly, what=what, field="anomaly_id", owner="user_id", pk=anomaly_id)
    resolved = resolve_anomaly(anomaly_id=anomaly_id, actor=actor, note=reason)
    return Performed(result={"anomaly_id": resolved.pk, "resolved_at": resolved.resolved_at})


def _webhook_retry(
    *, actor: User, target: Mapping[str, Any], params: Mapping[str, Any], reason: str, key: str
) -> Performed:
    from treasury.stripe.models import EventStatus, StripeEventProcessing
    from treasury.stripe.services import retry_event

    event_id = target["event_id"]
    processing = _target(
        actor,
        StripeEventProcessing,
        what=f"stripe event {event_id}",
        field="event_id",
        owner=None,  # events belong to no host: admins only, whatever their scope
        stripe_event_id=event_id,
    )
    if processing.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
        raise Conflict(
            f"stripe event {event_id} is already {processing.status}: nothing to retry",
            fields={"target.event_id": [str(processing.status)]},
        )
    result = retry_event(processing=processing, actor=actor)
    return Performed(
        result={
            "event_id": result.stripe_event_id,
            "status": result.status,
            "attempts": result.attempts,
            "last_error": result.last_error,
        }
    )


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in [
        Action("ledger.adjust", "adjust_ledger", _ledger_adjust, "a balanced manual posting"),
        Action("payout.hold", "hold_payout", _payout_hold, "stop a pending payout"),
        Action("payout.release", "release_payout", _payout_release, "release a held payout"),
        Action("split_rule.archive", "archive_split_rule", _split_rule_archive, "archive a rule"),
        Action("dispute.note", "add_dispute_note", _dispute_note, "note on a dispute"),
        Action("refund.create", "create_refund", _refund_create, "refund a charge"),
        Action("anomaly.resolve", "resolve_anomaly", _anomaly_resolve, "close an anomaly"),
        Action("webhook.retry", "retry_webhook", _webhook_retry, "run a Stripe event again"),
    ]
}


def may_perform(actor: User, action: str) -> bool:
    spec = ACTIONS.get(action)
    return bool(
        spec is not None
        and getattr(actor, "is_admin", False)
        and actor.has_perm(f"overrides.{spec.permission}")
    )


@transaction.atomic
def perform_override(
    *,
    actor: User,
    action: str,
    reason: str,
    target: Mapping[str, Any],
    params: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> OverrideResult:
    """Run one override (target and params already validated per action); returns the
    service's result and the id of the one audit row it wrote (the first one's, on an
    idempotent replay). Refused: Forbidden; unknown target or another host's: NotFound."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise InvalidInput(f"unknown action {action!r}", fields={"action": ["unknown"]})
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required", fields={"reason": ["required"]})
    if not getattr(actor, "is_admin", False):
        raise Forbidden("only staff may override")
    if not actor.has_perm(f"overrides.{spec.permission}"):
        raise Forbidden(f"your staff group may not {action}")
    with audit_scope(override={"action": action, "reason": reason}) as scope:
        performed = spec.run(
            actor=actor, target=target, params=params, reason=reason, key=_key(idempotency_key)
        )
    # The actor's own rows: a retried webhook's handler may audit its effects as the system.
    mine = [row for row in scope.rows if row.user_id == actor.pk]
    if performed.replayed and not mine:
        with system_context():
            first = (
                AuditLog.objects.filter(
                    action=performed.audit_action,
                    target_type=performed.target_type,
                    target_id=performed.target_id,
                )
                .order_by("id")
                .first()
            )
        if first is None:
            raise Conflict(f"the replayed {action} has no audit row")
        return OverrideResult(action, first.pk, True, performed.result)
    if len(mine) != 1:
        # A service that audits zero or several rows for one override is a bug: refuse it
        # rather than leave the console's promise broken (the transaction rolls back).
        raise Conflict(f"{action} wrote {len(mine)} audit rows instead of one")
    return OverrideResult(action, mine[0].pk, False, performed.result)

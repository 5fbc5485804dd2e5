"""The ledger's services: posting (ledger/posting.py, re-exported here), reversals,
adjustments and opening accounts.

Callers decide *whether* money moves (and check who may ask); the ledger decides *how*:
`post_transaction` validates, then one database function is idempotent on the key, locks
the touched accounts in id order (so concurrent postings never deadlock) and writes the
entries, the balances and the outbox event. Only that function writes the books: row-level
security keeps them readable by their owners, and the runtime role cannot write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from django.db import connection, transaction

from ledger.chart import parse_code
from ledger.models import LedgerAccount, LedgerTransaction, Side
from ledger.money import largest_remainder
from ledger.posting import (
    EntryLine,
    Posting,
    PostingOutcome,
    PostingStatus,
    credit,
    debit,
    open_accounts,
    post_transaction,
    post_transactions,
    request_hash,
    shard_for,
)
from treasury.errors import Conflict, Forbidden, IdempotencyConflict, InvalidInput
from treasury.models import User
from treasury.rls import system_context
from treasury.services import record_audit

__all__ = [
    "EntryLine",
    "Posting",
    "PostingOutcome",
    "PostingStatus",
    "credit",
    "debit",
    "ensure_account",
    "post_adjustment",
    "post_transaction",
    "post_transactions",
    "request_hash",
    "reverse_transaction",
    "shard_for",
]


def ensure_account(*, code: str, shard: int = 0) -> LedgerAccount:
    """Open an account the chart knows (idempotent); used by seeding and the admin."""
    parsed = parse_code(code)
    if parsed is None:
        raise InvalidInput(f"unknown account {code!r}", fields={"account": ["unknown account"]})
    open_accounts([(code, shard)])
    with system_context():
        account = LedgerAccount.objects.filter(code=code, shard=shard).first()
    if account is None:  # the chart knows the code, the users table not its owner
        raise InvalidInput(
            f"unknown account owner(s): {parsed.owner_id}",
            fields={"entries": ["unknown account owner"]},
        )
    return account


def _reversed_fraction(original: LedgerTransaction) -> Fraction:
    return sum(
        (Fraction(r.metadata.get("reversed_fraction", "1")) for r in original.reversals.all()),
        Fraction(0),
    )


@transaction.atomic
def reverse_transaction(
    *,
    transaction: LedgerTransaction,
    idempotency_key: str,
    ratio: Fraction | None = None,
    event_source: str | None = None,
    reference_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    created_by: User | None = None,
) -> LedgerTransaction:
    """Post the mirror image of `transaction`, in full or for `ratio` of it.

    Partial reversals are computed cumulatively: the k-th reversal posts
    allocate(reversed so far including this one) - allocate(reversed before), each leg split
    by the largest-remainder rule. So any sequence of partial reversals that reaches the
    whole reverses every entry exactly, to the cent. A leg whose cumulative share shrinks by
    a cent between two steps (the Alabama paradox) is posted on the opposite side, which
    keeps every reversal balanced. `ratio=None` reverses whatever is left.
    """
    original = transaction
    with system_context():
        existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.reverses_id != original.pk:
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was already used for another posting"
                )
            existing.was_replayed = True  # type: ignore[attr-defined]
            return existing
        with connection.cursor() as cursor:  # one reversal of a transaction at a time
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x1ED6, original.pk])
        before = _reversed_fraction(original)
        step = (1 - before) if ratio is None else Fraction(ratio)
        if step <= 0 or before + step > 1:
            raise Conflict(
                f"cannot reverse {step} of transaction {original.pk}:"
                f" {before} of it is already reversed",
                fields={"ratio": ["exceeds what is left to reverse"]},
            )
        after = before + step
        entries = list(original.entries.select_related("account").order_by("id"))
        lines: list[EntryLine] = []
        for currency in sorted({e.currency for e in entries}):
            legs = [e for e in entries if e.currency == currency]
            total = sum(e.amount_cents for e in legs if e.type == Side.DEBIT)
            for side in (Side.DEBIT, Side.CREDIT):
                side_legs = [e for e in legs if e.type == side]
                weights = [e.amount_cents for e in side_legs]
                now_cents = largest_remainder(int(total * after), weights)
                was_cents = largest_remainder(int(total * before), weights)
                for leg, now, was in zip(side_legs, now_cents, was_cents, strict=True):
                    delta = now - was
                    if delta == 0:
                        continue
                    mirrored = Side.CREDIT if (side == Side.DEBIT) == (delta > 0) else Side.DEBIT
                    lines.append(EntryLine(leg.account.code, mirrored, abs(delta), currency))
        if not lines:
            raise Conflict(f"{step} of transaction {original.pk} rounds to zero minor units")
        return post_transaction(
            idempotency_key=idempotency_key,
            entries=lines,
            event_source=event_source or f"{original.event_source}.reversal",
            reference_id=reference_id or original.reference_id,
            metadata={**(metadata or {}), "reversed_fraction": str(step)},
            reverses=original,
            created_by=created_by,
        )


@transaction.atomic
def post_adjustment(
    *,
    actor: User,
    idempotency_key: str,
    reason: str,
    entries: Sequence[EntryLine],
    reference_id: str | None = None,
) -> LedgerTransaction:
    """An ops correction: a balanced posting with a reason, by an admin, audited once."""
    if not actor.is_admin:
        raise Forbidden("only admins may post manual adjustments")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required", fields={"reason": ["required"]})
    from ledger.selectors import account_balance

    codes = sorted({line.account for line in entries})
    with system_context():
        before = {code: account_balance(code=code) for code in codes}
    posted = post_transaction(
        idempotency_key=idempotency_key,
        entries=entries,
        event_source="manual_adjustment",
        reference_id=reference_id,
        metadata={"reason": reason},
        created_by=actor,
    )
    if not posted.was_replayed:  # type: ignore[attr-defined]
        with system_context():
            record_audit(
                actor=actor,
                action="ledger.adjustment",
                target=posted,
                # Balances of the touched accounts on either side of the posting.
                before={"balances": before},
                after={
                    "idempotency_key": idempotency_key,
                    "reason": reason,
                    "entries": [line.as_json() for line in entries],
                    "balances": {code: account_balance(code=code) for code in codes},
                },
            )
    return posted

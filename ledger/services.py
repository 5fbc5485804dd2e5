"""Every write to the books goes through `post_transaction`.

Callers decide *whether* money moves (and check who may ask); the ledger decides *how*: it
validates, is idempotent on the key, locks the touched accounts in id order (so concurrent
postings never deadlock), writes the entries in one INSERT and the balances in one UPDATE,
all in one database transaction. The ledger writes as the system: row-level security keeps
the books readable only by their owners, and writable only by the services.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q

from events.services import record_ledger_event
from ledger.chart import parse_code
from ledger.models import DEBIT_NORMAL_KINDS, LedgerAccount, LedgerEntry, LedgerTransaction, Side
from ledger.money import largest_remainder, normalize_currency
from treasury.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
)
from treasury.models import User
from treasury.rls import system_context
from treasury.services import record_audit


@dataclass(frozen=True)
class EntryLine:
    """One leg of a posting: `amount_cents` (> 0) of `currency` debited or credited to an
    account code. `must_not_go_below` guards the account's balance under the lock."""

    account: str
    side: Side | str
    amount_cents: int
    currency: str
    must_not_go_below: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "side": str(self.side),
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "must_not_go_below": self.must_not_go_below,
        }


def debit(account: str, amount_cents: int, currency: str, **kwargs: Any) -> EntryLine:
    return EntryLine(account, Side.DEBIT, amount_cents, currency, **kwargs)


def credit(account: str, amount_cents: int, currency: str, **kwargs: Any) -> EntryLine:
    return EntryLine(account, Side.CREDIT, amount_cents, currency, **kwargs)


# --- validation ---


def _validated_lines(entries: Sequence[EntryLine]) -> list[EntryLine]:
    if len(entries) < 2:
        raise InvalidInput(
            "a transaction needs at least two entries", fields={"entries": ["min 2"]}
        )
    lines: list[EntryLine] = []
    for index, line in enumerate(entries):
        where = f"entries.{index}"
        amount = line.amount_cents
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidInput(
                f"{where}: amount_cents must be a positive integer (minor units), got {amount!r}",
                fields={f"{where}.amount_cents": ["must be a positive integer"]},
            )
        if str(line.side) not in Side.values:
            raise InvalidInput(
                f"{where}: side must be debit or credit",
                fields={f"{where}.type": ["debit or credit"]},
            )
        currency = normalize_currency(line.currency)
        parsed = parse_code(line.account)
        if parsed is None:
            raise InvalidInput(
                f"{where}: unknown account {line.account!r}",
                fields={f"{where}.account": ["unknown account"]},
            )
        if parsed.currency != currency:
            raise InvalidInput(
                f"{where}: account {line.account} holds {parsed.currency}, not {currency}",
                fields={f"{where}.currency": [f"account currency is {parsed.currency}"]},
            )
        if line.must_not_go_below is not None and parsed.type.hot:
            raise InvalidInput(f"{where}: a hot account cannot carry a balance guard")
        lines.append(
            EntryLine(line.account, Side(str(line.side)), amount, currency, line.must_not_go_below)
        )
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += (
            line.amount_cents if line.side == Side.DEBIT else -line.amount_cents
        )
    for currency, difference in totals.items():
        if difference:
            larger, smaller = ("debits", "credits") if difference > 0 else ("credits", "debits")
            raise InvalidInput(
                f"unbalanced in {currency}: {larger} exceed {smaller} by {abs(difference)}"
                " minor units",
                fields={"entries": [f"debits and credits differ in {currency}"]},
            )
    return lines


def request_hash(
    *,
    lines: Sequence[EntryLine],
    event_source: str,
    reference_id: str | None,
    effective_at: datetime | None,
    metadata: dict[str, Any],
    reverses: LedgerTransaction | None,
) -> str:
    """What makes two requests with one idempotency key "the same request"."""
    body = {
        "entries": [line.as_json() for line in lines],
        "event_source": event_source,
        "reference_id": reference_id,
        "effective_at": effective_at.isoformat() if effective_at else None,
        "metadata": metadata,
        "reverses": reverses.pk if reverses else None,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- accounts ---


def shard_for(code: str, idempotency_key: str) -> int:
    parsed = parse_code(code)
    if parsed is None or not parsed.type.hot:
        return 0
    return zlib.crc32(idempotency_key.encode()) % settings.LEDGER_HOT_ACCOUNT_SHARDS


def _open_accounts(keys: Iterable[tuple[str, int]]) -> None:
    """Open accounts the chart knows but the books may not have yet (a new host, a shard).
    Always in sorted order, so two postings opening the same accounts wait, never cross."""
    rows = []
    for code, shard in keys:
        parsed = parse_code(code)
        assert parsed is not None  # validated before
        rows.append((code, shard, parsed.owner_id, parsed.type.kind.value, parsed.currency))
    if owners := {row[2] for row in rows if row[2] is not None}:
        found = set(User.objects.filter(pk__in=owners).values_list("pk", flat=True))
        if unknown := owners - found:
            raise InvalidInput(
                f"unknown account owner(s): {', '.join(sorted(map(str, unknown)))}",
                fields={"entries": ["unknown account owner"]},
            )
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO ledger_accounts (code, shard, owner_id, kind, currency, balance_cents,"
            " created_at) VALUES (%s, %s, %s, %s, %s, 0, now())"
            " ON CONFLICT (code, shard) DO NOTHING",
            rows,
        )


def _select_for_update(keys: set[tuple[str, int]]) -> dict[tuple[str, int], LedgerAccount]:
    # Exactly the (code, shard) rows posted to: locking every shard of a hot account would
    # queue all concurrent charges on all of its shards, which is what the shards avoid.
    touched = Q()
    for code, shard in sorted(keys):
        touched |= Q(code=code, shard=shard)
    locked = LedgerAccount.objects.select_for_update().filter(touched).order_by("id")
    return {(a.code, a.shard): a for a in locked}


class _AccountsMissing(Exception):
    pass


def _lock_accounts(keys: set[tuple[str, int]]) -> dict[tuple[str, int], LedgerAccount]:
    """Row-lock the accounts in id order, so concurrent postings queue but never deadlock.

    Accounts not opened yet (a new host, a new shard) break that order, so a posting that
    finds one missing first gives back every lock it took (rolling back the savepoint
    releases them), opens the missing accounts while holding no lock, then locks them all.
    A concurrent posting cannot see our uncommitted new rows; it finds them missing and
    waits on our INSERT holding nothing, which leaves no cycle for a deadlock.
    """
    try:
        with transaction.atomic():
            accounts = _select_for_update(keys)
            if keys - accounts.keys():
                raise _AccountsMissing
        return accounts
    except _AccountsMissing:
        pass
    _open_accounts(sorted(keys))
    return _select_for_update(keys)


def ensure_account(*, code: str, shard: int = 0) -> LedgerAccount:
    """Open an account the chart knows (idempotent); used by seeding and the admin."""
    if parse_code(code) is None:
        raise InvalidInput(f"unknown account {code!r}", fields={"account": ["unknown account"]})
    with system_context():
        _open_accounts([(code, shard)])
        return LedgerAccount.objects.get(code=code, shard=shard)


# --- posting ---


def _existing(idempotency_key: str, body_hash: str) -> LedgerTransaction:
    existing = LedgerTransaction.objects.get(idempotency_key=idempotency_key)
    if existing.request_hash != body_hash:
        raise IdempotencyConflict(
            f"idempotency key {idempotency_key!r} was already used for a different posting",
            fields={"idempotency_key": ["reused with a different body"]},
        )
    return existing


@transaction.atomic
def post_transaction(
    *,
    idempotency_key: str,
    entries: Sequence[EntryLine],
    event_source: str,
    reference_id: str | None = None,
    effective_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    reverses: LedgerTransaction | None = None,
    created_by: User | None = None,
) -> LedgerTransaction:
    """Post one balanced transaction, exactly once per idempotency key.

    The same key with the same body returns the first transaction (its `was_replayed` is
    True); with a different body it raises IdempotencyConflict (HTTP 409).
    """
    if not idempotency_key or len(idempotency_key) > 255:
        raise InvalidInput("idempotency_key is required (at most 255 characters)")
    if not event_source:
        raise InvalidInput("event_source is required")
    metadata = metadata or {}
    lines = _validated_lines(entries)
    body_hash = request_hash(
        lines=lines,
        event_source=event_source,
        reference_id=reference_id,
        effective_at=effective_at,
        metadata=metadata,
        reverses=reverses,
    )
    with system_context():
        # The key is the gate: a concurrent twin waits here for us to commit, then sees ours.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
                " reference_id, effective_at, metadata, reverses_id, created_by_id, created_at)"
                " VALUES (%s, %s, %s, %s, coalesce(%s, now()), %s, %s, %s, now())"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, effective_at, created_at",
                [
                    idempotency_key,
                    body_hash,
                    event_source,
                    reference_id,
                    effective_at,
                    json.dumps(metadata, cls=DjangoJSONEncoder),
                    reverses.pk if reverses else None,
                    created_by.pk if created_by else None,
                ],
            )
            row = cursor.fetchone()
        if row is None:
            replay = _existing(idempotency_key, body_hash)
            replay.was_replayed = True  # type: ignore[attr-defined]
            return replay

        keyed = [(line, (line.account, shard_for(line.account, idempotency_key))) for line in lines]
        accounts = _lock_accounts({key for _, key in keyed})

        deltas: dict[int, int] = defaultdict(int)
        for line, key in keyed:
            account = accounts[key]
            debit_positive = line.amount_cents if line.side == Side.DEBIT else -line.amount_cents
            deltas[account.pk] += (
                debit_positive if account.kind in DEBIT_NORMAL_KINDS else -debit_positive
            )
        for line, key in keyed:
            if line.must_not_go_below is None:
                continue
            account = accounts[key]
            after = account.balance_cents + deltas[account.pk]
            if after < line.must_not_go_below:
                raise InsufficientFunds(
                    f"{account.code} would go to {after} {account.currency} minor units,"
                    f" below {line.must_not_go_below}",
                    fields={"amount_cents": ["exceeds the available balance"]},
                )

        LedgerEntry.objects.bulk_create(
            [
                LedgerEntry(
                    transaction_id=row[0],
                    account=accounts[key],
                    user_id=accounts[key].owner_id,
                    amount_cents=line.amount_cents,
                    currency=line.currency,
                    type=line.side,
                    event_source=event_source,
                    reference_id=reference_id,
                )
                for line, key in keyed
            ]
        )
        # The outbox event commits (or rolls back) with the posting itself.
        record_ledger_event(
            transaction_id=row[0],
            idempotency_key=idempotency_key,
            event_source=event_source,
            reference_id=reference_id,
            effective_at=row[1],
            metadata=metadata,
            legs=[(accounts[key], line) for line, key in keyed],
        )
        with connection.cursor() as cursor:
            changed = [(pk, delta) for pk, delta in deltas.items() if delta]
            if changed:
                values = ", ".join(["(%s::bigint, %s::bigint)"] * len(changed))
                cursor.execute(
                    "UPDATE ledger_accounts AS a SET balance_cents = a.balance_cents + v.delta"
                    f" FROM (VALUES {values}) AS v(id, delta) WHERE a.id = v.id",
                    [item for pair in changed for item in pair],
                )
        posted = LedgerTransaction(
            id=row[0],
            idempotency_key=idempotency_key,
            request_hash=body_hash,
            event_source=event_source,
            reference_id=reference_id,
            effective_at=row[1],
            metadata=metadata,
            reverses=reverses,
            created_by=created_by,
            created_at=row[2],
        )
        posted._state.adding = False
        posted._state.db = connection.alias
    posted.was_replayed = False  # type: ignore[attr-defined]
    return posted


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

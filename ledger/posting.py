"""Every write to the books: `post_transaction`, and `post_transactions` for many at once.

Python validates what deserves a clear 4xx message (amounts, sides, currencies, the chart's
codes, balance), computes the request hash and the hot-account shard, then makes ONE call
to PostgreSQL: `ledger_post(header, legs)` (ledger/migrations/0003_posting_function.py) is
idempotent on the key, opens the accounts the chart knows but the books lack, locks the
touched (account, shard) rows in id order, checks the balance guards, writes the entries,
the balances and the outbox event. A refusal comes back as its own SQLSTATE and becomes the
same named error as before (InvalidInput, IdempotencyConflict, InsufficientFunds).

The function refuses callers outside the admin/system context, so posting runs as the
system, and the context goes back to the caller's afterwards. Called outside a transaction
that is BEGIN, the context, the call and COMMIT: four round trips (thirteen before).
"""

from __future__ import annotations

import enum
import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction

from ledger.chart import parse_code
from ledger.models import LedgerTransaction, Side
from ledger.money import normalize_currency
from treasury.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    TreasuryError,
)
from treasury.models import User
from treasury.rls import ContextRole, set_rls_context, system_context

T = TypeVar("T")


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


@dataclass(frozen=True)
class Posting:
    """One balanced transaction to post: what `post_transaction` takes, as a value."""

    idempotency_key: str
    entries: Sequence[EntryLine]
    event_source: str
    reference_id: str | None = None
    effective_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    reverses: LedgerTransaction | None = None
    created_by: User | None = None


class PostingStatus(enum.StrEnum):
    POSTED = "posted"
    REPLAYED = "replayed"  # the key was posted before, with the same body
    REFUSED = "refused"  # nothing written; `error` says why


@dataclass(frozen=True)
class PostingOutcome:
    posting: Posting
    status: PostingStatus
    transaction: LedgerTransaction | None = None
    error: TreasuryError | None = None


# --- validation ---

SIDES = frozenset(Side.values)


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
        if str(line.side) not in SIDES:
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
    """What makes two requests with one idempotency key "the same request". Stored with
    every transaction since the beginning: it must not change, or replays would conflict."""
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


def shard_for(code: str, idempotency_key: str) -> int:
    parsed = parse_code(code)
    if parsed is None or not parsed.type.hot:
        return 0
    return zlib.crc32(idempotency_key.encode()) % settings.LEDGER_HOT_ACCOUNT_SHARDS


def account_json(code: str, shard: int) -> dict[str, Any]:
    """An account as ledger_lock_accounts opens it: its kind comes from the chart."""
    parsed = parse_code(code)
    assert parsed is not None  # validated before
    return {"code": code, "shard": shard, "kind": parsed.type.kind.value}


def _prepared(posting: Posting) -> dict[str, Any]:
    """The posting as ledger_post's (header, legs), or InvalidInput."""
    key = posting.idempotency_key
    if not key or len(key) > 255:
        raise InvalidInput("idempotency_key is required (at most 255 characters)")
    if not posting.event_source:
        raise InvalidInput("event_source is required")
    metadata = posting.metadata or {}
    lines = _validated_lines(posting.entries)
    header = {
        "idempotency_key": key,
        "request_hash": request_hash(
            lines=lines,
            event_source=posting.event_source,
            reference_id=posting.reference_id,
            effective_at=posting.effective_at,
            metadata=metadata,
            reverses=posting.reverses,
        ),
        "event_source": posting.event_source,
        "reference_id": posting.reference_id,
        # isoformat, not the encoder: it would cut the microseconds.
        "effective_at": posting.effective_at.isoformat() if posting.effective_at else None,
        "metadata": metadata,
        "reverses_id": posting.reverses.pk if posting.reverses else None,
        "created_by_id": posting.created_by.pk if posting.created_by else None,
    }
    legs = [
        {
            **account_json(line.account, shard_for(line.account, key)),
            "side": str(line.side),
            "amount_cents": line.amount_cents,
            "currency": line.currency,
            "floor_cents": line.must_not_go_below,
        }
        for line in lines
    ]
    return {"header": header, "legs": legs}


def _json(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder)


# --- refusals: SQLSTATE -> named error ---

REFUSALS: dict[str, type[TreasuryError]] = {
    "LD400": InvalidInput,
    "LD403": Forbidden,
    "LD409": IdempotencyConflict,
    "LD422": InsufficientFunds,
    "LD499": Conflict,  # not posted: another posting of an all-or-nothing batch was refused
}


def _refusal(code: str, message: str, fields: Any) -> TreasuryError:
    if isinstance(fields, str):
        fields = json.loads(fields) if fields else {}
    return REFUSALS[code](message, fields=fields or None)


def _mapped(error: DatabaseError) -> TreasuryError | None:
    cause = error.__cause__
    code = getattr(cause, "sqlstate", None)
    if code not in REFUSALS:
        return None
    diag = cause.diag  # type: ignore[union-attr]
    return _refusal(code, diag.message_primary or str(error), diag.message_detail)


# --- posting ---


def _as_system(call: Callable[[], T]) -> T:
    """Run `call` (one statement) in the system context, then give the caller's back.

    Outside a transaction, the context lives and dies with the one we open (BEGIN, the
    context, the call, COMMIT). Inside the caller's, system_context() puts theirs back and
    its savepoint keeps their transaction usable after a refusal, as before.
    """
    if connection.in_atomic_block:
        with system_context():
            return call()
    with transaction.atomic():
        set_rls_context(user_id=None, role=ContextRole.SYSTEM)
        return call()


def _transaction(posting: Posting, body_hash: str, row: Sequence[Any]) -> LedgerTransaction:
    """The LedgerTransaction the outcome row names, without reading it back: a replay's
    body hashed the same, so the posting's own fields are the stored ones."""
    status, transaction_id, effective_at, created_at, created_by_id = row[:5]
    replayed = status == PostingStatus.REPLAYED
    metadata = posting.metadata or {}
    if replayed:  # as the database stored it (the encoder's strings for dates, decimals)
        metadata = json.loads(_json(metadata))
    txn = LedgerTransaction(
        id=transaction_id,
        idempotency_key=posting.idempotency_key,
        request_hash=body_hash,
        event_source=posting.event_source,
        reference_id=posting.reference_id,
        effective_at=effective_at,
        metadata=metadata,
        reverses=posting.reverses,
        created_by_id=created_by_id,
        created_at=created_at,
    )
    if posting.created_by is not None and posting.created_by.pk == created_by_id:
        txn.created_by = posting.created_by
    txn._state.adding = False
    txn._state.db = connection.alias
    txn.was_replayed = replayed  # type: ignore[attr-defined]
    return txn


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
    posting = Posting(
        idempotency_key=idempotency_key,
        entries=entries,
        event_source=event_source,
        reference_id=reference_id,
        effective_at=effective_at,
        metadata=metadata,
        reverses=reverses,
        created_by=created_by,
    )
    prepared = _prepared(posting)

    def call() -> tuple[Any, ...]:
        with connection.cursor() as cursor:
            try:
                cursor.execute(
                    "SELECT status, transaction_id, effective_at, created_at, created_by_id"
                    " FROM ledger_post(%s::jsonb, %s::jsonb)",
                    [_json(prepared["header"]), _json(prepared["legs"])],
                )
            except DatabaseError as exc:
                refusal = _mapped(exc)
                if refusal is None:
                    raise
                raise refusal from None
            return cursor.fetchone()

    return _transaction(posting, prepared["header"]["request_hash"], _as_system(call))


def post_transactions(
    *, postings: Sequence[Posting], all_or_nothing: bool = False
) -> list[PostingOutcome]:
    """Post many independent transactions in one statement; one outcome per posting, in
    order: posted, replayed, or refused with the error post_transaction would raise.

    A refused posting writes nothing and does not stop the others, unless `all_or_nothing`:
    then, if any posting is refused, none is written and each of the others is refused with
    a Conflict naming the first one refused.
    """
    outcomes: list[PostingOutcome | None] = [None] * len(postings)
    prepared: list[tuple[int, dict[str, Any]]] = []
    for index, posting in enumerate(postings):
        try:
            prepared.append((index, _prepared(posting)))
        except InvalidInput as exc:
            outcomes[index] = PostingOutcome(posting, PostingStatus.REFUSED, error=exc)
    if all_or_nothing and len(prepared) < len(postings):
        first = next(i for i, outcome in enumerate(outcomes) if outcome is not None)
        return [
            outcome
            or PostingOutcome(
                posting,
                PostingStatus.REFUSED,
                error=Conflict(
                    f"not posted: posting {first} was refused and the batch is all or nothing"
                ),
            )
            for posting, outcome in zip(postings, outcomes, strict=True)
        ]
    if prepared:

        def call() -> list[tuple[Any, ...]]:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT status, transaction_id, effective_at, created_at, created_by_id,"
                    " error_code, error_message, error_fields"
                    " FROM ledger_post_batch(%s::jsonb, %s)",
                    [_json([item for _, item in prepared]), all_or_nothing],
                )
                return cursor.fetchall()

        for (index, item), row in zip(prepared, _as_system(call), strict=True):
            posting = postings[index]
            if row[0] == PostingStatus.REFUSED:
                outcomes[index] = PostingOutcome(
                    posting, PostingStatus.REFUSED, error=_refusal(row[5], row[6], row[7])
                )
            else:
                txn = _transaction(posting, item["header"]["request_hash"], row)
                outcomes[index] = PostingOutcome(posting, PostingStatus(row[0]), transaction=txn)
    return [outcome for outcome in outcomes if outcome is not None]


def open_accounts(keys: Sequence[tuple[str, int]]) -> None:
    """Open accounts the chart knows (idempotent), as the system; codes validated before."""
    accounts = _json([account_json(code, shard) for code, shard in keys])

    def call() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT ledger_open_accounts(%s::jsonb)", [accounts])

    _as_system(call)

"""Reads of the books. Row-level security decides what the caller's context may see."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, Sum

from ledger.models import DEBIT_NORMAL_KINDS, LedgerAccount, LedgerEntry, Side


def account_balance(*, code: str) -> int:
    """The maintained balance: one indexed read of the account's shard rows (at most
    LEDGER_HOT_ACCOUNT_SHARDS), whatever the number of entries."""
    total = LedgerAccount.objects.filter(code=code).aggregate(total=Sum("balance_cents"))["total"]
    return total or 0


def balance_at(*, code: str, at: datetime) -> int:
    """The balance as of `at`, recomputed from entries (index on account, created_at)."""
    accounts = list(LedgerAccount.objects.filter(code=code).values_list("id", "kind"))
    if not accounts:
        return 0
    debit_normal = accounts[0][1] in DEBIT_NORMAL_KINDS
    sums = LedgerEntry.objects.filter(
        account_id__in=[pk for pk, _ in accounts], created_at__lte=at
    ).aggregate(
        debits=Sum("amount_cents", filter=Q(type=Side.DEBIT)),
        credits=Sum("amount_cents", filter=Q(type=Side.CREDIT)),
    )
    debit_positive = (sums["debits"] or 0) - (sums["credits"] or 0)
    return debit_positive if debit_normal else -debit_positive


@dataclass(frozen=True)
class AccountBalance:
    code: str
    kind: str
    currency: str
    owner_id: Any
    balance_cents: int


def balances(*, owner_id: Any = None) -> list[AccountBalance]:
    """Balances per account code (shards summed) that the caller may see, optionally one owner's."""
    rows = LedgerAccount.objects.all()
    if owner_id is not None:
        rows = rows.filter(owner_id=owner_id)
    grouped = (
        rows.values("code", "kind", "currency", "owner_id")
        .annotate(balance=Sum("balance_cents"))
        .order_by("code")
    )
    return [
        AccountBalance(r["code"], r["kind"], r["currency"], r["owner_id"], r["balance"])
        for r in grouped
    ]


def entries(
    *,
    user_id: Any = None,
    currency: str | None = None,
    event_source: str | None = None,
    reference_id: str | None = None,
    account_code: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> QuerySet[LedgerEntry]:
    rows = LedgerEntry.objects.select_related("account", "transaction").order_by(
        "-created_at", "-id"
    )
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if currency:
        rows = rows.filter(currency=currency.upper())
    if event_source:
        rows = rows.filter(event_source=event_source)
    if reference_id:
        rows = rows.filter(reference_id=reference_id)
    if account_code:
        rows = rows.filter(account__code=account_code)
    if created_from:
        rows = rows.filter(created_at__gte=created_from)
    if created_to:
        rows = rows.filter(created_at__lt=created_to)
    return rows


# --- verification (verify_ledger, health, anomaly detection) ---


@dataclass(frozen=True)
class LedgerDifference:
    kind: str  # "balance", "unbalanced_transaction", "too_few_entries", "equation"
    subject: str
    expected: int
    actual: int

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: expected {self.expected}, found {self.actual}"


def ledger_differences(
    *, chunk_size: int = 5000, progress: Callable[[str, int, int], None] | None = None
) -> Iterator[LedgerDifference]:
    """Everything on which the books disagree with themselves; nothing on a clean ledger.

    Recomputes each account's balance from its entries (in id-range chunks, so progress can
    be shown and memory stays bounded), checks each transaction balances per currency, and
    the accounting equation per currency across all accounts.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM ledger_accounts")
        first, last = cursor.fetchone()
        span = max(last - first + 1, 1)
        for start in range(first, last + 1, chunk_size):
            cursor.execute(
                """
                SELECT a.code, a.shard, a.balance_cents,
                       coalesce(sum(CASE WHEN e.type = 'debit' THEN e.amount_cents
                                         ELSE -e.amount_cents END), 0)
                       * CASE WHEN a.kind IN ('asset', 'expense') THEN 1 ELSE -1 END
                  FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
                 WHERE a.id >= %s AND a.id < %s
                 GROUP BY a.id
                HAVING a.balance_cents <> coalesce(sum(CASE WHEN e.type = 'debit'
                       THEN e.amount_cents ELSE -e.amount_cents END), 0)
                       * CASE WHEN a.kind IN ('asset', 'expense') THEN 1 ELSE -1 END
                """,
                [start, start + chunk_size],
            )
            for code, shard, maintained, recomputed in cursor.fetchall():
                yield LedgerDifference("balance", f"{code}#{shard}", recomputed, maintained)
            if progress:
                progress("accounts", min(start + chunk_size - first, span), span)

        cursor.execute(
            """
            SELECT transaction_id, currency,
                   sum(CASE WHEN type = 'debit' THEN amount_cents ELSE 0 END),
                   sum(CASE WHEN type = 'credit' THEN amount_cents ELSE 0 END)
              FROM ledger_entries GROUP BY transaction_id, currency
            HAVING sum(CASE WHEN type = 'debit' THEN amount_cents ELSE -amount_cents END) <> 0
            """
        )
        for txn_id, currency, debits, credits in cursor.fetchall():
            yield LedgerDifference(
                "unbalanced_transaction", f"{txn_id} {currency}", debits, credits
            )
        cursor.execute(
            """
            SELECT t.id, count(e.id) FROM ledger_transactions t
              LEFT JOIN ledger_entries e ON e.transaction_id = t.id
             GROUP BY t.id HAVING count(e.id) < 2
            """
        )
        for txn_id, count in cursor.fetchall():
            yield LedgerDifference("too_few_entries", str(txn_id), 2, count)
        if progress:
            progress("transactions", 1, 1)

        cursor.execute(
            """
            SELECT currency, sum(CASE WHEN kind IN ('asset', 'expense') THEN balance_cents
                                      ELSE -balance_cents END)
              FROM ledger_accounts GROUP BY currency
            HAVING sum(CASE WHEN kind IN ('asset', 'expense') THEN balance_cents
                            ELSE -balance_cents END) <> 0
            """
        )
        for currency, imbalance in cursor.fetchall():
            yield LedgerDifference(
                "equation", f"assets + expenses - liabilities - revenue in {currency}", 0, imbalance
            )

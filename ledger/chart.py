"""The chart of accounts: which accounts exist, their kind, and how codes are spelled.

Codes follow DESIGN.md: `platform:<name>:<ccy>` and `user:<uuid>:<name>:<ccy>` (lower-case
currency in codes, upper-case ISO in columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

from ledger.models import AccountKind


@dataclass(frozen=True)
class AccountType:
    name: str
    kind: AccountKind
    # Hot accounts take a posting from every charge; they are split into shards so that
    # concurrent postings do not queue on one row lock (LEDGER_HOT_ACCOUNT_SHARDS).
    hot: bool = False


PLATFORM_ACCOUNTS = {
    t.name: t
    for t in [
        AccountType("stripe_balance", AccountKind.ASSET, hot=True),
        AccountType("fee_revenue", AccountKind.REVENUE, hot=True),
        AccountType("processing_fees", AccountKind.EXPENSE, hot=True),
        AccountType("payout_clearing", AccountKind.LIABILITY),
        AccountType("dispute_losses", AccountKind.EXPENSE),
        AccountType("adjustments", AccountKind.EXPENSE),
    ]
}

USER_ACCOUNTS = {
    t.name: t
    for t in [
        AccountType("payable", AccountKind.LIABILITY),
        AccountType("held", AccountKind.LIABILITY),
    ]
}


def platform_code(name: str, currency: str) -> str:
    return f"platform:{name}:{currency.lower()}"


def user_code(user_id: UUID | str, name: str, currency: str) -> str:
    return f"user:{user_id}:{name}:{currency.lower()}"


@dataclass(frozen=True)
class ParsedCode:
    owner_id: UUID | None
    type: AccountType
    currency: str


@lru_cache(maxsize=65536)  # every posting parses each of its codes: a marketplace has few
def parse_code(code: str) -> ParsedCode | None:
    """The account type a code names, or None when the chart has no such account."""
    parts = code.split(":")
    try:
        if len(parts) == 3 and parts[0] == "platform" and parts[1] in PLATFORM_ACCOUNTS:
            return ParsedCode(None, PLATFORM_ACCOUNTS[parts[1]], parts[2].upper())
        if len(parts) == 4 and parts[0] == "user" and parts[2] in USER_ACCOUNTS:
            return ParsedCode(UUID(parts[1]), USER_ACCOUNTS[parts[2]], parts[3].upper())
    except ValueError:
        return None
    return None

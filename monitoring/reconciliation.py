"""Matching Stripe's balance transactions with the ledger's postings on stripe_balance.

Each side is reduced to items: one Stripe balance transaction, or one ledger transaction's
net movement of the platform's Stripe balance (debits less credits on every
`platform:stripe_balance:<ccy>` shard, per currency). Both carry a match key naming the
business event, as the services key their postings:

- charge (or payment), source ch_: `charge:<ch>`
- refund, source re_: `refund:<re>`; refund_failure: `refund:<re>:failed`
- adjustment of category dispute, source dp_: `dispute:<dp>:opened`; of category
  dispute_reversal (funds reinstated): `dispute:<dp>:won`
- transfer, source tr_: `payout:<id>:settle` of the payout whose transfer it is
- transfer_refund, source trr_ (of tr_): `payout:<id>:reversal:<trr>` of the same payout,
  or its `payout:<id>:unsettle` (a paid payout that failed afterwards: its transfer's money
  comes back); several reversals of one transfer pair by amount

Anything else on either side keeps a key of its own and so stands alone: a manual
adjustment of the Stripe balance is "extra in ledger", an unexpected Stripe fee is "missing
in ledger". Types in RECONCILE_IGNORED_TYPES (the platform's own payouts to its bank, which
the ledger does not model) are skipped and counted.

Within a key, items pair up by equal (currency, amount) first, then in time order; what is
left over is missing or extra. Nothing here talks to a database or to Stripe.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitoring.models import DifferenceKind


@dataclass(frozen=True)
class StripeItem:
    transaction_id: str
    type: str
    reporting_category: str
    source: str
    net_cents: int
    amount_cents: int
    fee_cents: int
    currency: str  # upper-case ISO, as the ledger spells it
    created: datetime


@dataclass(frozen=True)
class LedgerItem:
    idempotency_key: str
    net_cents: int  # debits less credits on stripe_balance: Stripe's `net` sign
    currency: str
    effective_at: datetime
    payout_id: int | None = None


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    match_key: str
    stripe: StripeItem | None = None
    ledger: LedgerItem | None = None

    @property
    def occurred_at(self) -> datetime | None:
        if self.stripe is not None:
            return self.stripe.created
        return self.ledger.effective_at if self.ledger is not None else None

    def __str__(self) -> str:
        parts = [f"{self.kind}: {self.match_key}"]
        if self.stripe is not None:
            s = self.stripe
            parts.append(f"stripe {s.transaction_id} ({s.type}) net {s.net_cents} {s.currency}")
        else:
            parts.append("stripe: none")
        if self.ledger is not None:
            entry = self.ledger
            parts.append(f"ledger {entry.idempotency_key} net {entry.net_cents} {entry.currency}")
        else:
            parts.append("ledger: none")
        return "; ".join(parts)


@dataclass
class Comparison:
    matched: int = 0
    differences: list[Difference] = field(default_factory=list)


def stripe_item(txn: Mapping[str, Any]) -> StripeItem:
    source = txn.get("source") or ""
    if isinstance(source, Mapping):  # expanded (transfer reversals need their transfer)
        source = source.get("id") or ""
    return StripeItem(
        transaction_id=str(txn["id"]),
        type=str(txn.get("type") or ""),
        reporting_category=str(txn.get("reporting_category") or ""),
        source=str(source),
        net_cents=int(txn["net"]),
        amount_cents=int(txn["amount"]),
        fee_cents=int(txn.get("fee") or 0),
        currency=str(txn["currency"]).upper(),
        created=datetime.fromtimestamp(int(txn["created"]), tz=UTC),
    )


def stripe_match_key(txn: Mapping[str, Any], item: StripeItem) -> str:
    kind, source = item.type, item.source
    if not source:
        return f"stripe:{item.transaction_id}"
    if kind in ("charge", "payment"):
        return f"charge:{source}"
    if kind == "refund":
        return f"refund:{source}"
    if kind == "refund_failure":
        return f"refund_failure:{source}"
    if kind == "adjustment" and item.reporting_category == "dispute":
        return f"dispute:{source}:opened"
    if kind == "adjustment" and item.reporting_category == "dispute_reversal":
        return f"dispute:{source}:won"
    if kind == "transfer":
        return f"transfer:{source}"
    if kind == "transfer_refund":
        expanded = txn.get("source")
        transfer = expanded.get("transfer") if isinstance(expanded, Mapping) else None
        if isinstance(transfer, Mapping):
            transfer = transfer.get("id")
        if transfer:
            return f"transfer_reversal:{transfer}"
    return f"stripe:{item.transaction_id}"


def ledger_match_key(item: LedgerItem, transfer_of_payout: Mapping[int, str]) -> str:
    key = item.idempotency_key
    parts = key.split(":")
    if parts[0] == "charge" and len(parts) == 2:
        return key
    if parts[0] == "refund" and len(parts) == 2:
        return key
    if parts[0] == "refund" and len(parts) == 3 and parts[2] == "failed":
        return f"refund_failure:{parts[1]}"
    if parts[0] == "dispute" and len(parts) == 3 and parts[2] in ("opened", "won"):
        return key
    if parts[0] == "payout" and item.payout_id is not None:
        transfer = transfer_of_payout.get(item.payout_id)
        if transfer and len(parts) == 3 and parts[2] == "settle":
            return f"transfer:{transfer}"
        if transfer and len(parts) >= 3 and parts[2] in ("reversal", "unsettle"):
            return f"transfer_reversal:{transfer}"
    return f"ledger:{key}"


def payout_id_of(idempotency_key: str) -> int | None:
    parts = idempotency_key.split(":")
    if parts[0] == "payout" and len(parts) >= 3 and parts[1].isdigit():
        return int(parts[1])
    return None


def compare(
    *,
    stripe_items: Iterable[tuple[str, StripeItem]],
    ledger_items: Iterable[tuple[str, LedgerItem]],
    since: datetime,
    until: datetime,
) -> Comparison:
    """Pair the two sides by match key; report what involves anything in [since, until)."""
    stripe_by_key: dict[str, list[StripeItem]] = defaultdict(list)
    ledger_by_key: dict[str, list[LedgerItem]] = defaultdict(list)
    for key, s in stripe_items:
        stripe_by_key[key].append(s)
    for key, entry in ledger_items:
        ledger_by_key[key].append(entry)

    def inside(at: datetime | None) -> bool:
        return at is not None and since <= at < until

    result = Comparison()
    for key in sorted(stripe_by_key.keys() | ledger_by_key.keys()):
        stripes = sorted(stripe_by_key.get(key, []), key=lambda s: (s.created, s.transaction_id))
        ledgers = sorted(ledger_by_key.get(key, []), key=lambda e: (e.effective_at, e.net_cents))
        pairs: list[tuple[StripeItem | None, LedgerItem | None]] = []
        for s in list(stripes):  # exact pairs first
            twin = next(
                (e for e in ledgers if (e.currency, e.net_cents) == (s.currency, s.net_cents)),
                None,
            )
            if twin is not None:
                ledgers.remove(twin)
                stripes.remove(s)
                pairs.append((s, twin))
        for index in range(max(len(stripes), len(ledgers))):
            pairs.append(
                (
                    stripes[index] if index < len(stripes) else None,
                    ledgers[index] if index < len(ledgers) else None,
                )
            )
        for s, entry in pairs:
            stripe_at = s.created if s else None
            ledger_at = entry.effective_at if entry else None
            if not (inside(stripe_at) or inside(ledger_at)):
                continue  # both sides outside the period: another run's business
            if s is not None and entry is not None:
                if s.currency != entry.currency:
                    result.differences.append(
                        Difference(DifferenceKind.CURRENCY_MISMATCH, key, s, entry)
                    )
                elif s.net_cents != entry.net_cents:
                    result.differences.append(
                        Difference(DifferenceKind.AMOUNT_MISMATCH, key, s, entry)
                    )
                else:
                    result.matched += 1
            elif s is not None:
                result.differences.append(Difference(DifferenceKind.MISSING_IN_LEDGER, key, s))
            elif entry is not None:
                extra = Difference(DifferenceKind.EXTRA_IN_LEDGER, key, None, entry)
                result.differences.append(extra)
    result.differences = _drop_undone_transfers(result.differences)
    return result


def _drop_undone_transfers(differences: list[Difference]) -> list[Difference]:
    """A transfer Stripe made and fully reversed before the ledger settled it (a failed
    instant payout) never moved the ledger's Stripe balance: Stripe's two legs cancel, so
    neither is a difference."""
    lone: dict[str, list[Difference]] = defaultdict(list)
    for d in differences:
        if d.kind == DifferenceKind.MISSING_IN_LEDGER and d.stripe is not None:
            prefix, _, transfer = d.match_key.partition(":")
            if prefix in ("transfer", "transfer_reversal"):
                lone[transfer].append(d)
    undone: set[int] = set()
    for legs in lone.values():
        kinds = {d.match_key.split(":")[0] for d in legs}
        net: dict[str, int] = defaultdict(int)
        for d in legs:
            assert d.stripe is not None
            net[d.stripe.currency] += d.stripe.net_cents
        if kinds == {"transfer", "transfer_reversal"} and not any(net.values()):
            undone.update(id(d) for d in legs)
    return [d for d in differences if id(d) not in undone]

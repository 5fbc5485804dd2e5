"""The books: accounts, journal transactions and their entries.

PostgreSQL guarantees what must never happen (see the migrations next door): a transaction
whose debits and credits differ per currency fails at COMMIT; entries and transactions are
append-only; amounts are positive; an entry's currency and owner are its account's.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class AccountKind(models.TextChoices):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"


# Assets and expenses grow with debits; liabilities and revenue with credits.
DEBIT_NORMAL_KINDS = frozenset({AccountKind.ASSET, AccountKind.EXPENSE})


class Side(models.TextChoices):
    DEBIT = "debit"
    CREDIT = "credit"


class LedgerAccount(models.Model):
    """One account per (code, shard). Hot platform accounts have N shards summed on read."""

    id = models.BigAutoField(primary_key=True)
    code = models.CharField(max_length=200)
    shard = models.PositiveSmallIntegerField(default=0)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_accounts",
        db_index=False,  # (owner, currency) below serves it
    )
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    currency = models.CharField(max_length=3)
    # Natural-side balance (debit-normal kinds: debits - credits; others: credits - debits).
    # Maintained by post_transaction under the row lock; verify_ledger recomputes it.
    balance_cents = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ledger_accounts"
        constraints = [
            models.UniqueConstraint(fields=["code", "shard"], name="ledger_accounts_code_shard"),
            models.CheckConstraint(
                condition=models.Q(kind__in=AccountKind.values), name="ledger_accounts_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"),
                name="ledger_accounts_currency_iso",
            ),
        ]
        indexes = [models.Index(fields=["owner", "currency"])]

    def __str__(self) -> str:
        return self.code if self.shard == 0 else f"{self.code}#{self.shard}"

    @property
    def is_debit_normal(self) -> bool:
        return self.kind in DEBIT_NORMAL_KINDS


class LedgerTransaction(models.Model):
    """One business event (a charge, a refund, a payout step, an adjustment)."""

    id = models.BigAutoField(primary_key=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    request_hash = models.CharField(max_length=64)
    event_source = models.CharField(max_length=64)
    reference_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001  (seed: nullable)
    effective_at = models.DateTimeField()
    metadata = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ledger_transactions"
        indexes = [
            models.Index(fields=["event_source", "reference_id"]),
            models.Index(fields=["effective_at"]),
        ]

    def __str__(self) -> str:
        return self.idempotency_key


class LedgerEntry(models.Model):
    """The seed's `ledger_entries`, plus the transaction and account each belongs to."""

    id = models.BigAutoField(primary_key=True)
    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    # Indexed by (account, created_at) and (user, currency, created_at) below: a second,
    # one-column index each would only cost every posting two more index writes per entry.
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    # The account's owner, copied so that row-level security filters entries without a join.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    type = models.CharField(max_length=6, choices=Side.choices)
    event_source = models.CharField(max_length=64)
    reference_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001  (seed: nullable)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ledger_entries"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_cents__gt=0), name="ledger_entries_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(type__in=Side.values), name="ledger_entries_type_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "created_at"]),
            models.Index(fields=["user", "currency", "created_at"]),
            models.Index(fields=["event_source", "reference_id"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.amount_cents} {self.currency} {self.account_id}"

    @property
    def signed_cents(self) -> int:
        """Debits positive, credits negative."""
        return self.amount_cents if self.type == Side.DEBIT else -self.amount_cents

"""The seed's `payouts`: money leaving a host's or artist's payable for their Stripe account.

A payout's money columns never change once written, and its status moves only along the
paths below; PostgreSQL refuses anything else (migrations/0002). Every cent it moves is a
ledger posting keyed `payout:<id>:<step>` (services.py).

    held ──approve──▶ pending ──transfer──▶ paid               (standard)
      │                  │   └──transfer──▶ in_flight ──payout.paid──▶ paid   (instant)
      └──reject──▶ cancelled  └──error──▶ failed ◀──payout.failed / reversal──┘
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class PayoutStatus(models.TextChoices):
    PENDING = "pending"  # reserved; the Stripe transfer is not confirmed yet
    IN_FLIGHT = "in_flight"  # instant: transferred, the connected account's payout is on its way
    PAID = "paid"  # the money left the platform's Stripe balance (clearing settled)
    FAILED = "failed"  # the reservation was released (reason in failure_reason)
    HELD = "held"  # reserved, waiting for an admin's review (risk above the threshold)
    CANCELLED = "cancelled"  # rejected by an admin; the reservation was released


# Still holding money in payout_clearing: what the clearing balance must equal.
UNSETTLED_STATUSES = (PayoutStatus.PENDING, PayoutStatus.IN_FLIGHT, PayoutStatus.HELD)


class PayoutMethod(models.TextChoices):
    STANDARD = "standard"
    INSTANT = "instant"


class PayoutSource(models.TextChoices):
    REQUEST = "request"  # the recipient asked (POST /api/payouts/initiate)
    SCHEDULE = "schedule"  # the nightly run
    RETRY = "retry"  # an admin retried a failed payout


class Payout(models.Model):
    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payouts"
    )
    # Taken from the recipient's payable, the instant fee included; `net_cents` is what the
    # Stripe transfer carries.
    amount_cents = models.BigIntegerField()
    fee_cents = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    method = models.CharField(max_length=16, choices=PayoutMethod.choices)
    source = models.CharField(
        max_length=16, choices=PayoutSource.choices, default=PayoutSource.REQUEST
    )
    status = models.CharField(max_length=16, choices=PayoutStatus.choices)
    # The seed's risk score, in basis points (0 = no concern, 10,000 = certain): an integer,
    # as everything on this row is; the signals say why, in words.
    risk_score = models.IntegerField(default=0)
    risk_signals = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # The reservation (payable -> payout_clearing) and its payable leg (the seed's
    # ledger_entry_id).
    ledger_transaction = models.OneToOneField(
        "ledger.LedgerTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payout",
    )
    ledger_entry = models.ForeignKey(
        "ledger.LedgerEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    stripe_account_id = models.CharField(max_length=255)  # the destination, when initiated
    stripe_transfer_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_payout_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_transfer_reversal_id = models.CharField(max_length=255, blank=True)
    # Of the transfer, what Stripe reversed (transfer.reversed), as booked so far.
    reversed_cents = models.BigIntegerField(default=0)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_reason = models.TextField(blank=True)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="retries"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    initiated_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "payouts"
        ordering = ["-initiated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"], name="payouts_user_idempotency_key"
            ),
            models.CheckConstraint(
                condition=models.Q(amount_cents__gt=0), name="payouts_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(fee_cents__gte=0, fee_cents__lt=models.F("amount_cents")),
                name="payouts_fee_below_amount",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    reversed_cents__gte=0,
                    reversed_cents__lte=models.F("amount_cents") - models.F("fee_cents"),
                ),
                name="payouts_reversed_within_net",
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="payouts_currency_iso"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=PayoutStatus.values), name="payouts_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(method__in=PayoutMethod.values), name="payouts_method_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(source__in=PayoutSource.values), name="payouts_source_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(risk_score__gte=0, risk_score__lte=10_000),
                name="payouts_risk_score_bps",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "initiated_at"]),
            models.Index(fields=["status", "initiated_at"]),
        ]

    def __str__(self) -> str:
        return f"payout {self.pk} {self.amount_cents} {self.currency} ({self.status})"

    @property
    def net_cents(self) -> int:
        """What reaches the recipient's Stripe account: the amount less the instant fee."""
        return self.amount_cents - self.fee_cents

    @property
    def transfer_group(self) -> str:
        """Names the payout's transfer at Stripe, so a lost answer can be found again."""
        return f"payout_{self.pk}"

    def ledger_key(self, step: str) -> str:
        return f"payout:{self.pk}:{step}"

"""Refunds and disputes: everything that sends money back to buyers.

- `Refund` (the seed's `refunds`): a buyer's or admin's request, or a refund made at Stripe
  directly; booked as the charge's split reversed pro rata (services.py, `refund:<re_id>`).
- `RefundTransferReversal`: money pulled back from a recipient's connected account when a
  refund leaves their payable below zero because they were already paid out; a reversal
  Stripe refuses stays a debt on the payable.
- `Dispute` (the seed's `disputes`) and `DisputeNote`: a chargeback, its holds and outcome,
  and the resolution notes ops staff write.

PostgreSQL guards what must never happen (migrations/0002): money columns never change, the
statuses move only forward, Stripe ids and postings are written once, the refunds of a
charge never exceed it, and nothing is deleted.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from treasury.stripe.models import StripeCharge


class RefundStatus(models.TextChoices):
    PENDING = "pending"  # not answered by Stripe yet, or pending at Stripe
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # refused, canceled, or failed after it succeeded (booked back)


class RefundReason(models.TextChoices):
    """Stripe's refund reasons."""

    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"


class Refund(models.Model):
    id = models.BigAutoField(primary_key=True)
    # Null until Stripe answers (the request is committed first, Stripe is called after).
    stripe_refund_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    # The seed's `original_charge_id`: the Stripe charge id, as a key to the booked charge.
    charge = models.ForeignKey(
        "treasury.StripeCharge",
        to_field="stripe_charge_id",
        db_column="original_charge_id",
        on_delete=models.PROTECT,
        related_name="refunds",
    )
    # The charge's buyer and seller, copied for row-level security (who may read it).
    buyer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="refunds_received",
    )
    host = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="refunds_of_sales"
    )
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(
        max_length=32, choices=RefundReason.choices, default=RefundReason.REQUESTED_BY_CUSTOMER
    )
    note = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=RefundStatus.choices, default=RefundStatus.PENDING
    )
    # Null for a refund made at Stripe directly (the dashboard), adopted from its event.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="refunds_requested",
    )
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # The policy the charge's refunds are booked by (taken from settings by its first
    # refund, so that every refund of one charge reverses the same split).
    platform_refunds_fee = models.BooleanField()
    platform_absorbs_stripe_fee = models.BooleanField()
    # The posting that booked it (`refund:<re_id>`), once Stripe took the money, and the
    # one that booked it back (`refund:<re_id>:failed`) if it failed afterwards.
    ledger_transaction = models.OneToOneField(
        "ledger.LedgerTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="refund",
    )
    failure_transaction = models.OneToOneField(
        "ledger.LedgerTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="failed_refund",
    )
    # What the posting took from each party: {"platform_fee_cents", "recipients":
    # {user_id: cents}, "stripe_fee_returned": {user_id: cents}}.
    split = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    failure_reason = models.TextField(blank=True)
    # Money not recovered from connected accounts (a transfer reversal refused): debts.
    recovery_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "refunds"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                name="refunds_requester_idempotency_key",
            ),
            models.CheckConstraint(
                condition=models.Q(amount_cents__gt=0), name="refunds_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="refunds_currency_iso"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=RefundStatus.values), name="refunds_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(reason__in=RefundReason.values), name="refunds_reason_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(failure_transaction__isnull=True)
                | models.Q(ledger_transaction__isnull=False),
                name="refunds_booked_back_only_if_booked",
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "created_at"]),
            models.Index(fields=["host", "created_at"]),
            models.Index(fields=["status", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"refund {self.pk} {self.amount_cents} {self.currency} ({self.status})"

    @property
    def ledger_key(self) -> str:
        return f"refund:{self.stripe_refund_id}"


class ReversalStatus(models.TextChoices):
    PENDING = "pending"  # asked, Stripe's answer not recorded yet (retried by the job)
    REVERSED = "reversed"
    FAILED = "failed"  # Stripe refused (e.g. balance_insufficient): the debt stays


class RefundTransferReversal(models.Model):
    """Part of a payout's transfer pulled back from the recipient's connected account, for
    the share of a refund their payable could no longer cover."""

    id = models.BigAutoField(primary_key=True)
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="reversals")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="refund_reversals"
    )
    payout = models.ForeignKey(
        "payouts.Payout", on_delete=models.PROTECT, related_name="refund_reversals"
    )
    stripe_transfer_id = models.CharField(max_length=255)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=16, choices=ReversalStatus.choices, default=ReversalStatus.PENDING
    )
    stripe_reversal_id = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "refund_transfer_reversals"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_cents__gt=0),
                name="refund_transfer_reversals_amount_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=ReversalStatus.values),
                name="refund_transfer_reversals_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_transfer_id} -{self.amount_cents} {self.currency} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"treasury-refund-reversal-{self.pk}"


class DisputeStatus(models.TextChoices):
    """Stripe's dispute statuses; the seed's four are needs_response, under_review, won, lost."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    WARNING_CLOSED = "warning_closed"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"
    PREVENTED = "prevented"


# Inquiries (warning_*) move no money; a chargeback's funds leave Stripe when it opens.
OPEN_DISPUTE_STATUSES = (
    DisputeStatus.WARNING_NEEDS_RESPONSE,
    DisputeStatus.WARNING_UNDER_REVIEW,
    DisputeStatus.NEEDS_RESPONSE,
    DisputeStatus.UNDER_REVIEW,
)
CLOSED_DISPUTE_STATUSES = (
    DisputeStatus.WON,
    DisputeStatus.LOST,
    DisputeStatus.WARNING_CLOSED,
    DisputeStatus.PREVENTED,
)


class Dispute(models.Model):
    id = models.BigAutoField(primary_key=True)
    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    charge = models.ForeignKey(
        "treasury.StripeCharge",
        to_field="stripe_charge_id",
        db_column="charge_id",
        on_delete=models.PROTECT,
        related_name="disputes",
    )
    host = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="disputes_of_sales"
    )
    status = models.CharField(max_length=32, choices=DisputeStatus.choices)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=64, blank=True)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    # What Stripe took when it opened: the disputed funds and its dispute fee.
    withdrawn_cents = models.BigIntegerField(default=0)
    fee_cents = models.BigIntegerField(default=0)
    # Who bears a loss (the split rule's dispute_loss_bearer) and the fee (settings),
    # decided when it opened.
    loss_bearer = models.CharField(max_length=16)
    fee_bearer = models.CharField(max_length=16)
    # What each party's share of the disputed funds is: {"platform_cents", "recipients":
    # {user_id: cents}} (held from the recipients' payables while it is open), and the fee
    # each recipient pays when they bear it ({user_id: cents}).
    holds = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    fee_shares = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    opened_transaction = models.OneToOneField(
        "ledger.LedgerTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dispute_opened",
    )
    closed_transaction = models.OneToOneField(
        "ledger.LedgerTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dispute_closed",
    )
    outcome = models.TextField(blank=True)  # what the close did with the money, in words
    stripe_created_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "disputes"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_cents__gte=0), name="disputes_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(withdrawn_cents__gte=0, fee_cents__gte=0),
                name="disputes_money_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="disputes_currency_iso"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=DisputeStatus.values), name="disputes_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["host", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_dispute_id} {self.amount_cents} {self.currency} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_DISPUTE_STATUSES

    def ledger_key(self, step: str) -> str:
        return f"dispute:{self.stripe_dispute_id}:{step}"


class DisputeNote(models.Model):
    """A resolution note on a dispute (append-only; each one is audited)."""

    id = models.BigAutoField(primary_key=True)
    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dispute_notes"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "dispute_notes"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"note {self.pk} on {self.dispute_id}"


class ChargeToRefund(StripeCharge):
    """The booked charges, as the refunds admin lists them (a proxy: no table of its own),
    with a "refund" action."""

    class Meta:
        proxy = True
        verbose_name = "charge to refund"
        verbose_name_plural = "charges to refund"

"""Stripe's side of the treasury: event processing, connected accounts, posted charges.

dj-stripe keeps the raw Stripe records (`djstripe.Event`, `djstripe.WebhookEventTrigger`);
these tables keep what the treasury decided about them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class EventStatus(models.TextChoices):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"  # a type the treasury has no handler for: stored and acknowledged


class StripeEventProcessing(models.Model):
    """One row per Stripe event id: the guarantee that an event is acted on exactly once.

    The processor locks the event's Stripe object, then reads this row: `processed` and
    `ignored` events are skipped however often Stripe delivers them; `failed` ones are
    retried (a redelivery, the `retry_failed_events` job, the admin's retry action).
    """

    id = models.BigAutoField(primary_key=True)
    stripe_event_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=100, db_index=True)
    stripe_object_id = models.CharField(max_length=255, db_index=True)
    # The connected account an event is about (Connect events), blank for the platform's.
    stripe_account_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=16, choices=EventStatus.choices, default=EventStatus.RECEIVED
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    note = models.CharField(max_length=255, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "stripe_event_processing"
        ordering = ["-created_at", "-id"]
        verbose_name = "Stripe event"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=EventStatus.values),
                name="stripe_event_processing_status_valid",
            )
        ]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} {self.stripe_event_id} ({self.status})"


class OnboardingStatus(models.TextChoices):
    PENDING = "pending"
    COMPLETED = "completed"
    REJECTED = "rejected"


class StripeAccount(models.Model):
    """The seed's `stripe_accounts`: a host's or artist's Stripe Connect Express account.

    The primary key is the user's id (the seed's `id UUID PRIMARY KEY REFERENCES users(id)`),
    which is also what row-level security compares with the request's user.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        db_column="id",
        on_delete=models.PROTECT,
        related_name="stripe_account",
    )
    stripe_account_id = models.CharField(max_length=255, unique=True)
    onboarding_status = models.CharField(
        max_length=16, choices=OnboardingStatus.choices, default=OnboardingStatus.PENDING
    )
    charges_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    details_submitted = models.BooleanField(default=False)
    disabled_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "stripe_accounts"
        ordering = ["-created_at"]
        verbose_name = "connected account"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(onboarding_status__in=OnboardingStatus.values),
                name="stripe_accounts_onboarding_status_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.stripe_account_id} ({self.onboarding_status})"


class StripeCharge(models.Model):
    """A buyer's payment as the treasury booked it: who paid, whose sale it was, the split
    rule version and the exact cents each party got, and the ledger transaction.

    Written only by the system (webhook processing); readable by the buyer, the host (the
    seller, owner of the split rule), admins and the system.
    """

    id = models.BigAutoField(primary_key=True)
    stripe_charge_id = models.CharField(max_length=255, unique=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    buyer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="stripe_charges_paid",
    )
    host = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="stripe_charges_sold"
    )
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    stripe_fee_cents = models.BigIntegerField()
    stripe_fee_bearer = models.CharField(max_length=16)
    # Null when the charge was split by the settings' default terms (the host had no rule).
    split_rule = models.ForeignKey(
        "splits.SplitRule",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="stripe_charges",
    )
    split_rule_version = models.PositiveIntegerField(null=True, blank=True)
    # {"platform_fee_cents": ..., "recipients": [{"recipient_id", "amount_cents",
    #  "stripe_fee_cents"}]}: what refunds and disputes will unwind, pro rata.
    allocation = models.JSONField(encoder=DjangoJSONEncoder)
    ledger_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", on_delete=models.PROTECT, related_name="stripe_charge"
    )
    charged_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "stripe_charges"
        ordering = ["-created_at", "-id"]
        verbose_name = "charge"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_cents__gt=0), name="stripe_charges_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(stripe_fee_cents__gte=0),
                name="stripe_charges_fee_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"),
                name="stripe_charges_currency_iso",
            ),
        ]
        indexes = [
            models.Index(fields=["host", "created_at"]),
            models.Index(fields=["buyer", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_charge_id} {self.amount_cents} {self.currency}"
